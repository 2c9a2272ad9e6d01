package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPNodePeerOverride changes one node's session with one peer.
type BGPNodePeerOverride struct {
	// Peer is the BGPPeer's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Peer string `json:"peer"`
	// LocalAddress is the address the node opens the session from, and
	// the next hop of its routes to that peer. It must be an address of
	// the node (on any interface, a loopback or dummy one included) of the
	// peer's family. Without it the node uses its address on the subnet
	// that holds the peer's address, else its own (InternalIP) address of
	// that family.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="localAddress must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!self.contains(':') || !self.contains('.')",message="write IPv6 addresses in hexadecimal, without an embedded dotted IPv4 part"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip(self).isGlobalUnicast()",message="localAddress must be a unicast address (not loopback, link-local, multicast or unspecified)"
	LocalAddress string `json:"localAddress"`
}

// BGPNodeOverrideSpec is what one node does differently from what the
// BGPPeers say.
type BGPNodeOverrideSpec struct {
	// RouterID is the node's BGP identifier, an IPv4 address unique among
	// the routers of the AS. Unset means the node's first IPv4 InternalIP
	// (else ExternalIP); a node without either gets one derived from its
	// name, so an IPv6-only cluster should set it for every node.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="routerID must be an IPv4 address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !ip(self).isUnspecified()",message="routerID must not be 0.0.0.0"
	RouterID string `json:"routerID,omitempty"`
	// LocalASN replaces the BGPPeers' localASN on this node, for every
	// peer.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	// +kubebuilder:validation:XValidation:rule="self != 23456",message="localASN must not be 23456 (AS_TRANS, RFC 6793: a placeholder, never a real AS)"
	LocalASN *int64 `json:"localASN,omitempty"`
	// Peers change the node's session with individual peers.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=peer
	Peers []BGPNodePeerOverride `json:"peers,omitempty"`
}

// BGPNodeOverride changes the BGP settings of one node: its name is the
// node's name (like the node's HeraldNode). Only that node's agent reads
// it; an override named after no node does nothing.
//
// It is an object of its own rather than annotations on the Node: the API
// server validates it at admission like the rest of Herald's API, Herald
// needs no write access to Nodes, and whoever may change BGP settings need
// not be allowed to edit Nodes.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpnode;bgpnodes,categories=herald
// +kubebuilder:printcolumn:name="Router ID",type=string,JSONPath=".spec.routerID"
// +kubebuilder:printcolumn:name="Local ASN",type=integer,JSONPath=".spec.localASN"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BGPNodeOverride struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPNodeOverrideSpec `json:"spec,omitempty"`
}

// BGPNodeOverrideList is a list of BGPNodeOverride.
//
// +kubebuilder:object:root=true
type BGPNodeOverrideList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPNodeOverride `json:"items"`
}
