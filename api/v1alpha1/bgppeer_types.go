package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a BGPPeer and a BGPAdvertisement.
const (
	// BGPValidCondition is False when the object cannot be applied as
	// written (an invalid selector, a password Secret that cannot be
	// read); its message names the field.
	BGPValidCondition = "Valid"
)

// Defaults of a BGPPeer's timers when they are not set (those of RFC 4271
// §10 and of FRR, BIRD and GoBGP).
const (
	// DefaultBGPPort is the BGP port.
	DefaultBGPPort = 179
	// DefaultHoldTimeSeconds is the hold time proposed when holdTime is
	// not set; keepaliveTime then defaults to a third of the negotiated
	// hold time.
	DefaultHoldTimeSeconds = 90
	// DefaultConnectRetrySeconds is the connect-retry time when
	// connectRetryTime is not set: 10 s, as FRR's datacenter profile
	// (RFC 4271's 120 s would make a session wait two minutes after a
	// router restarts, and bound each connection attempt to as long).
	DefaultConnectRetrySeconds = 10
	// DefaultGracefulRestartSeconds is the restart time a peer is asked
	// to keep the routes for when gracefulRestart sets none.
	DefaultGracefulRestartSeconds = 120
)

// About the timers' validation. A metav1.Duration is a string in the CRD
// schema, written as Go writes durations ("90s", "1m30s"). The pattern
// below is the non-negative subset of what Go's time.ParseDuration (and
// CEL's duration()) accept; every CEL rule that calls duration() first
// checks it, so a malformed value gets the pattern's error and not a
// second, obscure evaluation error. BGP carries its timers in whole
// seconds (the OPEN message's 16-bit hold time), so a fraction of a second
// is refused rather than silently rounded.

// SecretKeyRef names one key of a Secret in Herald's namespace (the
// namespace the controller and the agents run in, herald-system with the
// chart's defaults).
type SecretKeyRef struct {
	// Name of the Secret, in Herald's namespace. A BGPPeer is
	// cluster-scoped, so it cannot point into another namespace: that
	// would let whoever may write BGPPeers make Herald read any Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be a Secret's name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`
	// Key of the entry in the Secret's data that holds the password.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="key must be a Secret key: letters, digits, '-', '_' and '.'"
	Key string `json:"key,omitempty"`
}

// BGPGracefulRestart is the graceful restart capability (RFC 4724): a
// peer keeps this node's routes for restartTime while its agent restarts,
// so a rolling upgrade does not move traffic.
type BGPGracefulRestart struct {
	// Enabled advertises the capability.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// RestartTime is how long the peer keeps the routes after the session
	// drops, in whole seconds from 1s to 4095s (the capability's 12-bit
	// field). Unset means 120s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || self.matches('^(0|([0-9]+[hms])+)$')",message="restartTime must be whole seconds, written with h, m and s (such as 90s or 1m30s)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="restartTime must be between 1s and 4095s"
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPBFD turns on Bidirectional Forwarding Detection (RFC 5880, single
// hop RFC 5881, multihop RFC 5883) for the session: a dead link or node is
// detected in minReceiveInterval × multiplier (300 ms × 3 by default)
// instead of the hold time, and the session is taken down. Present means
// on; the router must run BFD for the same address too.
type BGPBFD struct {
	// MinTransmitInterval is the desired minimum interval between the BFD
	// packets this node sends, in milliseconds.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	MinTransmitInterval *int32 `json:"minTransmitInterval,omitempty"`
	// MinReceiveInterval is the minimum interval between BFD packets this
	// node is able to receive, in milliseconds.
	// +optional
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=60000
	MinReceiveInterval *int32 `json:"minReceiveInterval,omitempty"`
	// Multiplier is the number of packets that may be missed before the
	// session is declared down (the detect multiplier).
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	Multiplier *int32 `json:"multiplier,omitempty"`
}

// BGPPeerSpec is one BGP neighbour (a router) and how the selected nodes
// talk to it. Every selected node opens its own session to the address.
//
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !self.keepaliveTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || has(self.holdTime) && !self.holdTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || ((has(self.holdTime) ? duration(self.holdTime) : duration('90s')) == duration('0s') ? duration(self.keepaliveTime) == duration('0s') : duration(self.keepaliveTime) < (has(self.holdTime) ? duration(self.holdTime) : duration('90s')))",message="keepaliveTime must be less than holdTime (90s when unset), and 0 when holdTime is 0",fieldPath=".keepaliveTime"
type BGPPeerSpec struct {
	// Address is the peer's IPv4 or IPv6 address. A node opens the session
	// from its address on the interface whose subnet holds this address;
	// for a peer on no subnet of the node (ebgpMultihop, or iBGP), from the
	// node's own address of the family (its InternalIP, else ExternalIP),
	// unless the node's BGPNodeOverride names another local address. The
	// peer carries routes of its own family only. IPv6 link-local peers
	// are not supported (they need an interface).
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="address must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!self.contains(':') || !self.contains('.')",message="write IPv6 addresses in hexadecimal, without an embedded dotted IPv4 part"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip(self).isGlobalUnicast()",message="address must be a unicast address (not loopback, link-local, multicast or unspecified)"
	Address string `json:"address"`
	// PeerASN is the peer's autonomous system number. Equal to the local
	// ASN makes the session iBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:XValidation:rule="self != 23456",message="peerASN must not be 23456 (AS_TRANS, RFC 6793: a placeholder, never a real AS)"
	PeerASN int64 `json:"peerASN"`
	// LocalASN is the nodes' autonomous system number towards this peer.
	// A node's BGPNodeOverride may replace it for that node.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:XValidation:rule="self != 23456",message="localASN must not be 23456 (AS_TRANS, RFC 6793: a placeholder, never a real AS)"
	LocalASN int64 `json:"localASN"`
	// Port is the peer's TCP port.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// PasswordSecretRef names the TCP MD5 password (RFC 2385) of the
	// session: a key of a Secret in Herald's namespace (herald-system with
	// the chart's defaults; a Secret elsewhere is never read). Unset means
	// no password.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`
	// HoldTime is the hold time proposed in the OPEN message: 0 (no
	// keepalives, the session never times out) or from 3s to 65535s, in
	// whole seconds. Unset means 90s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || self.matches('^(0|([0-9]+[hms])+)$')",message="holdTime must be whole seconds, written with h, m and s (such as 90s or 1m30s)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self) == duration('0s') || duration(self) >= duration('3s') && duration(self) <= duration('65535s')",message="holdTime must be 0 or between 3s and 65535s (RFC 4271 §4.2)"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between KEEPALIVE messages, in whole
	// seconds, less than holdTime (0 when holdTime is 0). Unset means a
	// third of the negotiated hold time.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || self.matches('^(0|([0-9]+[hms])+)$')",message="keepaliveTime must be whole seconds, written with h, m and s (such as 90s or 1m30s)"
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// ConnectRetryTime is how long to wait before trying again to open a
	// session that could not be established, in whole seconds from 1s to
	// 65535s; each attempt also gives up after it. Unset means 10s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || self.matches('^(0|([0-9]+[hms])+)$')",message="connectRetryTime must be whole seconds, written with h, m and s (such as 90s or 1m30s)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self) >= duration('1s') && duration(self) <= duration('65535s')",message="connectRetryTime must be between 1s and 65535s"
	ConnectRetryTime *metav1.Duration `json:"connectRetryTime,omitempty"`
	// EBGPMultihop is the TTL of an eBGP session's packets, for a peer
	// that is not on a subnet of the node (a router behind another
	// router, a route server). Unset means 1: the peer must be on a subnet
	// of the node. iBGP sessions are not limited by it.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	EBGPMultihop *int32 `json:"ebgpMultihop,omitempty"`
	// GracefulRestart asks the peer to keep this node's routes while its
	// agent restarts.
	// +optional
	GracefulRestart *BGPGracefulRestart `json:"gracefulRestart,omitempty"`
	// BFD detects a dead path faster than the hold time. Unset means off.
	// +optional
	BFD *BGPBFD `json:"bfd,omitempty"`
	// NodeSelector picks the nodes that peer with this router (one rack's
	// nodes with their top-of-rack router, say); empty means every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// BGPPeerStatus reports problems with a peer as a whole. Each node's
// session with it is in that node's HeraldNode (status.bgp.sessions).
type BGPPeerStatus struct {
	// Conditions of the peer: Valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPPeer is a router that the selected nodes open a BGP session with, to
// advertise the Service addresses that BGPAdvertisements select.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=herald
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=".spec.address"
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=".spec.peerASN"
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=".spec.localASN"
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=".status.conditions[?(@.type==\"Valid\")].status"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeer.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
