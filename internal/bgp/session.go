package bgp

import (
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// SessionState is the BGP finite state machine's state (RFC 4271 §8).
type SessionState string

// The states of a BGP session.
const (
	StateIdle        SessionState = "Idle"
	StateConnect     SessionState = "Connect"
	StateActive      SessionState = "Active"
	StateOpenSent    SessionState = "OpenSent"
	StateOpenConfirm SessionState = "OpenConfirm"
	StateEstablished SessionState = "Established"
)

// BFDState is the local state of a peer's BFD session (RFC 5880 §6.2).
type BFDState string

// The states of a BFD session. BFDDisabled means the peer has no BFD.
const (
	BFDDisabled  BFDState = ""
	BFDAdminDown BFDState = "AdminDown"
	BFDDown      BFDState = "Down"
	BFDInit      BFDState = "Init"
	BFDUp        BFDState = "Up"
)

// Session is the state of the session with one peer.
type Session struct {
	// Peer is the neighbor's address.
	Peer netip.Addr
	// PeerASN and LocalASN are the configured AS numbers.
	PeerASN, LocalASN uint32
	// State of the BGP session.
	State SessionState
	// Since is when the session entered State (for Established: the
	// uptime's start). Zero when the speaker has not seen a change yet.
	Since time.Time
	// RoutesAdvertised counts the prefixes the speaker currently
	// advertises to the peer (0 unless Established), as GoBGP computes
	// them after the export policy.
	RoutesAdvertised int
	// LastError is why the session last failed, in GoBGP's words: the
	// reason it went down ("hold-timer-expired", "notification-received
	// code 6(cease) subcode 2(administrative shutdown)"), a NOTIFICATION
	// while opening ("notification-sent code 2(open) subcode 2(bad peer
	// as)" when the peer's OPEN has another AS than Peer.PeerASN), or the
	// last failed connection attempt ("dial tcp …: i/o timeout", which is
	// what a wrong TCP MD5 password looks like: the peer's kernel drops the
	// badly signed SYNs silently). Cleared when the session is
	// established.
	LastError string
	// BFD is the BFD session's state; BFDDisabled without BFD.
	BFD BFDState
}

func fsmState(s bgppkt.FSMState) SessionState {
	switch s {
	case bgppkt.BGP_FSM_CONNECT:
		return StateConnect
	case bgppkt.BGP_FSM_ACTIVE:
		return StateActive
	case bgppkt.BGP_FSM_OPENSENT:
		return StateOpenSent
	case bgppkt.BGP_FSM_OPENCONFIRM:
		return StateOpenConfirm
	case bgppkt.BGP_FSM_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

func apiSessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_SESSION_STATE_CONNECT:
		return StateConnect
	case api.PeerState_SESSION_STATE_ACTIVE:
		return StateActive
	case api.PeerState_SESSION_STATE_OPENSENT:
		return StateOpenSent
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

func bfdState(s api.BfdSessionState) BFDState {
	switch s {
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return BFDAdminDown
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return BFDInit
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return BFDUp
	}
	return BFDDown
}
