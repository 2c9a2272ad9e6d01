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

// setReceiveBuffer asks for a socket receive buffer of n bytes: with
// SO_RCVBUFFORCE (CAP_NET_ADMIN) past the system's net.core.rmem_max,
// else with SO_RCVBUF up to it. It returns the size the kernel granted
// (which counts its own overhead: about half of it holds frames).
func setReceiveBuffer(c *packet.Conn, n int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	var got int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil {
		return 0, fmt.Errorf("raw socket control: %w", err)
	}
	if serr != nil {
		return got, fmt.Errorf("set SO_RCVBUF: %w", serr)
	}
	return got, nil
}
