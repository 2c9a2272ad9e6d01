//go:build linux

package membership

import (
	"fmt"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ignoreOutgoing asks the kernel (Linux ≥ 4.20) not to hand this socket the
// frames that other sockets on this host send on the interface: they are
// this node's own heartbeats (or a test's), never a peer's.
func ignoreOutgoing(c *packet.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}); err != nil {
		return fmt.Errorf("raw socket control: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set PACKET_IGNORE_OUTGOING: %w", serr)
	}
	return nil
}

// pendingFrame reports whether a frame waits in the socket's receive queue
// (SIOCINQ on a packet socket gives the length of the next one).
func pendingFrame(c *packet.Conn) (bool, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("raw socket: %w", err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return false, fmt.Errorf("raw socket control: %w", err)
	}
	if ierr != nil {
		return false, fmt.Errorf("SIOCINQ: %w", ierr)
	}
	return n > 0, nil
}
