package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConflictPhase says when another host was found using an address.
// +kubebuilder:validation:Enum=Probe;Announced
type ConflictPhase string

const (
	// ConflictProbe: the probe before the address was first announced
	// found another host on it. Herald does not announce it, and the
	// controller gives the Service another address if it never had this
	// one announced; the agent probes again from time to time and drops
	// the entry once the address is free.
	ConflictProbe ConflictPhase = "Probe"
	// ConflictAnnounced: another host uses an address this node announces.
	// Herald keeps the address and keeps answering: it defends it with one
	// gratuitous ARP or unsolicited Neighbor Advertisement at most every
	// 10 seconds (RFC 5227 §2.4 (c)), and never moves the Service.
	ConflictAnnounced ConflictPhase = "Announced"
)

// NodeInterface is one network interface of the node as the agent sees it.
type NodeInterface struct {
	// Name is the interface name (eth0, enp0s1, br0, …).
	Name string `json:"name"`
	// MAC is the interface's hardware address.
	// +optional
	MAC string `json:"mac,omitempty"`
	// Up: administratively up with a carrier.
	// +optional
	Up bool `json:"up,omitempty"`
	// Broadcast: can carry ARP (not point-to-point, not NOARP).
	// +optional
	Broadcast bool `json:"broadcast,omitempty"`
	// Loopback marks the loopback interface.
	// +optional
	Loopback bool `json:"loopback,omitempty"`
	// Enslaved: a port of a bridge or bond (its master carries the segment).
	// +optional
	Enslaved bool `json:"enslaved,omitempty"`
	// LAN: the interface carries one of the Node's InternalIP or ExternalIP
	// addresses. A policy without interfaces announces on these only.
	// +optional
	LAN bool `json:"lan,omitempty"`
	// Addresses are a LAN interface's addresses with their prefix length
	// (192.168.10.216/24), link-local ones left out: the subnets clients
	// reach the node on, which `herald doctor` checks the pools against.
	// Only reported for LAN interfaces.
	// +optional
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// Gateways are the next hops of the node's default routes through a
	// LAN interface (192.168.10.1): the LAN's routers, whose addresses
	// `herald doctor` keeps out of the pools. Only reported for LAN
	// interfaces.
	// +optional
	// +listType=atomic
	Gateways []string `json:"gateways,omitempty"`
}

// SegmentPeer is another node's agent heard on a segment.
type SegmentPeer struct {
	// Node is the peer's node name (for a key mismatch: as its
	// unauthenticated frames claim).
	Node string `json:"node"`
	// MAC is the Ethernet source of its heartbeats.
	// +optional
	MAC string `json:"mac,omitempty"`
	// KeyFingerprints identify the heartbeat keys it signs with (short
	// hashes, never keys).
	// +optional
	// +listType=atomic
	KeyFingerprints []string `json:"keyFingerprints,omitempty"`
}

// Segment is the node's presence on one announcing interface.
type Segment struct {
	// Interface is the announcing interface.
	Interface string `json:"interface"`
	// Peers are the other agents heard on it, authenticated.
	// +optional
	// +listType=atomic
	Peers []SegmentPeer `json:"peers,omitempty"`
	// KeyMismatches are Herald agents heard on it whose heartbeats fail
	// authentication: they use a different heartbeat key. Both sides then
	// answer for the addresses they would own, so two MACs may answer until
	// the keys agree again.
	// +optional
	// +listType=atomic
	KeyMismatches []SegmentPeer `json:"keyMismatches,omitempty"`
}

// Announcement is an address this node answers ARP/NDP for.
type Announcement struct {
	// Address is the announced address.
	Address string `json:"address"`
	// Interfaces it is answered on, LAN interfaces first.
	// +listType=atomic
	Interfaces []string `json:"interfaces"`
	// Since is when this node started answering for it.
	Since metav1.Time `json:"since"`
}

// AddressConflict is another host found using an address.
type AddressConflict struct {
	// Address is the address in question.
	Address string `json:"address"`
	// MAC is the other host's hardware address.
	MAC string `json:"mac"`
	// Interface is where it was seen.
	Interface string `json:"interface"`
	// Phase says whether it was found before the first announcement
	// (Probe) or while this node announces the address (Announced).
	Phase ConflictPhase `json:"phase"`
	// Since is when it was first seen.
	Since metav1.Time `json:"since"`
}

// DataPlaneMode is Herald's own data plane on a node.
// +kubebuilder:validation:Enum=nftables;none
type DataPlaneMode string

const (
	// DataPlaneNFTables: Herald's nftables table forwards load-balancer
	// traffic to the endpoints.
	DataPlaneNFTables DataPlaneMode = "nftables"
	// DataPlaneNone: Herald only answers ARP/NDP; kube-proxy, Cilium or
	// another Service proxy forwards (or nothing does, with --dataplane=none
	// on a node without one).
	DataPlaneNone DataPlaneMode = "none"
)

// NodeDataPlane is what forwards load-balancer traffic on a node, as the
// agent found it.
type NodeDataPlane struct {
	// Mode is Herald's own data plane on the node.
	Mode DataPlaneMode `json:"mode"`
	// Evidence is what --dataplane=auto found of another data plane
	// ("interface kube-ipvs0 exists", "nftables table ip kube-proxy
	// exists", …); empty when none was found or the mode was set by flag.
	// +optional
	Evidence string `json:"evidence,omitempty"`
	// KernelARPInterfaces are the interfaces on which the node's own kernel
	// answers ARP for the addresses kube-proxy's IPVS mode puts on
	// kube-ipvs0 — every load-balancer address among them — because
	// net.ipv4.conf arp_ignore is 0 there (kube-proxy's strictARP is off).
	// Every such node then answers for every IPv4 load-balancer address,
	// beside Herald's one owner. Empty when kube-ipvs0 does not exist.
	// +optional
	// +listType=atomic
	KernelARPInterfaces []string `json:"kernelARPInterfaces,omitempty"`
}

// HeraldNodeStatus is what the agent on a node reports. The agent writes
// it only when something in it changes, so a quiet cluster makes no API
// writes; nothing in it is a timestamp that moves by itself.
type HeraldNodeStatus struct {
	// AgentVersion is the version of the agent.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`
	// Incarnation identifies the agent's current run; it grows on restart.
	// +optional
	Incarnation string `json:"incarnation,omitempty"`
	// KeyFingerprints identify the heartbeat keys the agent signs with.
	// Every agent of the cluster should show the same ones.
	// +optional
	// +listType=atomic
	KeyFingerprints []string `json:"keyFingerprints,omitempty"`
	// KeyError says why the agent has no usable heartbeat key (and so
	// announces nothing).
	// +optional
	KeyError string `json:"keyError,omitempty"`
	// ExcludedByLabel: the Node carries
	// node.kubernetes.io/exclude-from-external-load-balancers and the agent
	// honours it, so this node announces nothing.
	// +optional
	ExcludedByLabel bool `json:"excludedByLabel,omitempty"`
	// Interfaces are the node's network interfaces.
	// +optional
	// +listType=atomic
	Interfaces []NodeInterface `json:"interfaces,omitempty"`
	// Segments are the interfaces the agent announces on, with the peers
	// heard there.
	// +optional
	// +listType=atomic
	Segments []Segment `json:"segments,omitempty"`
	// Announcements are the addresses this node answers for.
	// +optional
	// +listType=atomic
	Announcements []Announcement `json:"announcements,omitempty"`
	// Conflicts are other hosts found using load-balancer addresses.
	// +optional
	// +listType=atomic
	Conflicts []AddressConflict `json:"conflicts,omitempty"`
	// DataPlane is what forwards load-balancer traffic on the node.
	// +optional
	DataPlane *NodeDataPlane `json:"dataPlane,omitempty"`
	// BGP is the node's BGP speaker: its sessions with the BGPPeers that
	// select it. Absent when no BGPPeer selects the node.
	// +optional
	BGP *NodeBGP `json:"bgp,omitempty"`
}

// BGPSessionState is the state of a BGP session (RFC 4271 §8.2.2).
// +kubebuilder:validation:Enum=Idle;Connect;Active;OpenSent;OpenConfirm;Established
type BGPSessionState string

// BGP session states.
const (
	BGPSessionIdle        BGPSessionState = "Idle"
	BGPSessionConnect     BGPSessionState = "Connect"
	BGPSessionActive      BGPSessionState = "Active"
	BGPSessionOpenSent    BGPSessionState = "OpenSent"
	BGPSessionOpenConfirm BGPSessionState = "OpenConfirm"
	// BGPSessionEstablished: the session is up and routes are exchanged.
	BGPSessionEstablished BGPSessionState = "Established"
)

// BFDState is the state of a BFD session (RFC 5880 §4.1).
// +kubebuilder:validation:Enum=AdminDown;Down;Init;Up
type BFDState string

// BFD session states.
const (
	BFDAdminDown BFDState = "AdminDown"
	BFDDown      BFDState = "Down"
	BFDInit      BFDState = "Init"
	BFDUp        BFDState = "Up"
)

// BGPSession is this node's session with one BGPPeer.
type BGPSession struct {
	// Peer is the BGPPeer's name.
	Peer string `json:"peer"`
	// Address is the peer's address.
	// +optional
	Address string `json:"address,omitempty"`
	// PeerASN is the peer's AS number.
	// +optional
	PeerASN int64 `json:"peerASN,omitempty"`
	// LocalASN is this node's AS number in the session (the BGPPeer's, or
	// the node's BGPNodeOverride's).
	// +optional
	LocalASN int64 `json:"localASN,omitempty"`
	// LocalAddress is the address the node speaks from, the next hop of
	// its routes.
	// +optional
	LocalAddress string `json:"localAddress,omitempty"`
	// State is the session's state.
	State BGPSessionState `json:"state"`
	// Since is when the session entered State (for Established: its
	// uptime's start).
	Since metav1.Time `json:"since"`
	// RoutesAdvertised is the number of prefixes advertised to the peer.
	// +optional
	RoutesAdvertised int32 `json:"routesAdvertised,omitempty"`
	// BFDState is the state of the session's BFD; absent when the BGPPeer
	// does not turn BFD on.
	// +optional
	BFDState BFDState `json:"bfdState,omitempty"`
	// LastError is the last reason the session went down or could not be
	// established (a NOTIFICATION received or sent, a connection error),
	// kept until the session is established again.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// NodeBGP is a node's BGP speaker.
type NodeBGP struct {
	// RouterID is the node's BGP identifier.
	// +optional
	RouterID string `json:"routerID,omitempty"`
	// Sessions are the node's sessions, one per BGPPeer that selects the
	// node, sorted by peer name.
	// +optional
	// +listType=map
	// +listMapKey=peer
	Sessions []BGPSession `json:"sessions,omitempty"`
	// Advertised are the load-balancer addresses the node advertises, each
	// with the peers whose sessions are established and that receive it
	// (in a host route or an aggregate holding it), sorted by address.
	// +optional
	// +listType=atomic
	Advertised []BGPAdvertised `json:"advertised,omitempty"`
}

// BGPAdvertised is one address a node advertises by BGP.
type BGPAdvertised struct {
	// Address is the load-balancer address.
	Address string `json:"address"`
	// Peers are the BGPPeers (names) that receive it from this node.
	// +listType=atomic
	Peers []string `json:"peers"`
}

// HeraldNode is the report of the Herald agent on one node (same name as
// the Node, deleted with it). The agent is its only writer; the controller
// combines all of them into the Services' herald.dev/Announced condition.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=hnode;hnodes,categories=herald
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=".status.agentVersion"
// +kubebuilder:printcolumn:name="Keys",type=string,JSONPath=".status.keyFingerprints"
// +kubebuilder:printcolumn:name="Excluded",type=boolean,JSONPath=".status.excludedByLabel"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type HeraldNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status HeraldNodeStatus `json:"status,omitempty"`
}

// HeraldNodeList is a list of HeraldNode.
//
// +kubebuilder:object:root=true
type HeraldNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []HeraldNode `json:"items"`
}
