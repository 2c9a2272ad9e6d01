//go:build !linux

package membership

import (
	"errors"
	"net"
	"time"

	"github.com/mdlayher/packet"
)

// Heartbeats need AF_PACKET, which only Linux has (packet.Listen fails
// elsewhere anyway); these keep the package building for the CLI.

var errNoFrame = errors.New("no frame queued")

func ignoreOutgoing(*packet.Conn) error { return nil }

func setReceiveBuffer(*packet.Conn, int) (int, error) { return 0, nil }

type frameSocket struct{}

func newFrameSocket(*packet.Conn, int, uint16, net.HardwareAddr) (*frameSocket, error) {
	return nil, errors.New("heartbeats need Linux")
}

func (*frameSocket) recv([]byte) (int, time.Time, error) { return 0, time.Time{}, net.ErrClosed }
func (*frameSocket) send([]byte) error                   { return net.ErrClosed }
func (*frameSocket) drops() (uint32, error)              { return 0, nil }
func (*frameSocket) close() error                        { return nil }
