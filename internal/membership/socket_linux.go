//go:build linux

package membership

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// errNoFrame is what frameSocket.recv returns when no frame is queued.
var errNoFrame = errors.New("no frame queued")

// frameSocket is the heartbeat socket as the Member uses it: frames are
// sent and received with non-blocking raw system calls on a descriptor
// that is not in the Go runtime's network poller, and received frames
// carry the kernel's arrival time.
//
// Why: an idle agent's cost is its wake-ups. With a goroutine blocked in
// a read, every peer's heartbeat (20 a second each at the defaults) woke
// a thread, and every system call made through syscall.Syscall woke the
// runtime's monitor thread (sysmon), which then polled every 20 µs until
// the process slept again: several context switches per frame, more than
// the frame's own work. Instead, the Member reads whatever is queued when
// it wakes anyway (to send its own heartbeat, or to judge a deadline), so
// the frames of any number of peers cost it one wake-up per interval; the
// kernel's timestamps keep deadlines exact, and raw system calls (on a
// non-blocking socket they return at once) keep sysmon asleep.
type frameSocket struct {
	// mu guards fd against Close while a call uses it (the Member sends
	// from Run and from Leave).
	mu  sync.Mutex
	fd  int // -1 once closed
	dst unix.RawSockaddrLinklayer
	// msg, iov and oob are recvmsg's arguments, reused (recv is called
	// from Run only).
	msg unix.Msghdr
	iov unix.Iovec
	oob [64]byte
}

// newFrameSocket takes over the socket of c, which is set up (bound,
// group joined, options set) and must not be used afterwards: frames go
// to dst on the interface with index ifindex, with EtherType proto.
//
// packet.Conn sets the socket up; its descriptor is then duplicated and
// c closed, which takes the socket out of the runtime's poller (a
// registered descriptor wakes a thread per frame even when nothing reads
// it) and leaves the socket itself, with its binding and group
// membership, to the duplicate.
func newFrameSocket(c *packet.Conn, ifindex int, proto uint16, dst net.HardwareAddr) (*frameSocket, error) {
	s := &frameSocket{fd: -1}
	if len(dst) > len(s.dst.Addr) {
		return nil, fmt.Errorf("destination %s too long for a link-layer address", dst)
	}
	// packet(7): to send, sll_family, sll_addr, sll_halen, sll_ifindex
	// and sll_protocol (network byte order) suffice; the rest is 0.
	s.dst.Family = unix.AF_PACKET
	s.dst.Protocol = proto<<8 | proto>>8
	s.dst.Ifindex = int32(ifindex)
	s.dst.Halen = uint8(len(dst))
	copy(s.dst.Addr[:], dst)

	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	var derr error
	if err := rc.Control(func(fd uintptr) {
		s.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("raw socket control: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("duplicate the heartbeat socket: %w", derr)
	}
	if err := c.Close(); err != nil {
		_ = unix.Close(s.fd)
		return nil, fmt.Errorf("close the poller's copy of the heartbeat socket: %w", err)
	}
	// Without timestamps (no kernel lacks them since 2.6.22) a frame
	// counts as heard when it is read, up to an interval late.
	_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	s.msg.Iov = &s.iov
	s.msg.SetIovlen(1)
	return s, nil
}

// recv reads the next queued frame into b (not empty) without waiting. It
// returns the frame's length and its arrival time by the kernel's
// realtime clock (zero if the kernel gave none), or errNoFrame.
func (s *frameSocket) recv(b []byte) (int, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, time.Time{}, net.ErrClosed
	}
	s.iov.Base = &b[0]
	s.iov.SetLen(len(b))
	s.msg.Control = &s.oob[0]
	s.msg.SetControllen(len(s.oob))
	s.msg.Flags = 0
	var r uintptr
	var e syscall.Errno
	for {
		r, _, e = unix.RawSyscall(unix.SYS_RECVMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msg)), unix.MSG_DONTWAIT)
		if e != unix.EINTR {
			break
		}
	}
	switch e {
	case 0:
	case unix.EAGAIN:
		return 0, time.Time{}, errNoFrame
	default:
		return 0, time.Time{}, fmt.Errorf("recvmsg: %w", e)
	}
	return int(r), s.stamp(), nil
}

// stamp is the arrival time in the control data of the last recvmsg.
func (s *frameSocket) stamp() time.Time {
	msgs, err := unix.ParseSocketControlMessage(s.oob[:s.msg.Controllen])
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			var ts unix.Timespec
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), m.Data)
			return time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
	}
	return time.Time{}
}

// send sends one frame (not empty) to the destination without waiting:
// a full device queue is an error, as a lost frame would be.
func (s *frameSocket) send(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	var e syscall.Errno
	for {
		_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&s.dst)), unix.SizeofSockaddrLinklayer)
		if e != unix.EINTR {
			break
		}
	}
	if e != 0 {
		return fmt.Errorf("sendto: %w", e)
	}
	return nil
}

// drops returns how many frames the kernel dropped for want of room in
// the socket's receive buffer since the last call (reading the count
// resets it).
func (s *frameSocket) drops() (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return 0, net.ErrClosed
	}
	var st unix.TpacketStats
	size := uint32(unsafe.Sizeof(st))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return 0, fmt.Errorf("PACKET_STATISTICS: %w", e)
	}
	return st.Drops, nil
}

// close closes the socket; later calls fail with net.ErrClosed.
func (s *frameSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}
