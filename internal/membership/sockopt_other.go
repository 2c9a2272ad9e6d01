//go:build !linux

package membership

import "github.com/mdlayher/packet"

// ignoreOutgoing is a no-op where AF_PACKET does not exist (packet.Listen
// fails there anyway); it keeps the package building for the CLI.
func ignoreOutgoing(*packet.Conn) error { return nil }

// pendingFrame cannot tell elsewhere; deaths are then judged at once.
func pendingFrame(*packet.Conn) (bool, error) { return false, nil }

// setReceiveBuffer is a no-op elsewhere.
func setReceiveBuffer(*packet.Conn, int) (int, error) { return 0, nil }

// socketDrops cannot tell elsewhere.
func socketDrops(*packet.Conn) (uint32, error) { return 0, nil }
