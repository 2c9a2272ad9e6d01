package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPCommunity is a BGP community (RFC 1997): two 16-bit numbers, such as
// 64512:100, or a well-known community by name: no-export (65535:65281),
// no-advertise (65535:65282), no-export-subconfed or its alias local-as
// (65535:65283), no-peer (65535:65284, RFC 3765), blackhole (65535:666,
// RFC 7999).
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^((6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})|no-export|no-advertise|no-export-subconfed|local-as|no-peer|blackhole)$')",message="a community is two numbers from 0 to 65535 such as 64512:100, or one of no-export, no-advertise, no-export-subconfed, local-as, no-peer, blackhole"
type BGPCommunity string

// BGPLargeCommunity is a BGP large community (RFC 8092): three numbers
// from 0 to 4294967295, such as 64512:1:100. The global administrator (the
// first number) may not be 4294967295: RFC 7300 reserves that AS, and
// Herald's BGP speaker uses it for marks of its own that it strips before a
// route leaves the node.
//
// +kubebuilder:validation:MinLength=5
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(p, int(p) <= 4294967295)",message="a large community is three numbers from 0 to 4294967295, such as 64512:1:100"
// +kubebuilder:validation:XValidation:rule="!self.startsWith('4294967295:')",message="the global administrator 4294967295 is reserved (RFC 7300) and used by Herald's BGP speaker for its own marks"
type BGPLargeCommunity string

// BGPAdvertisementSpec says which Service addresses the selected nodes
// advertise to which peers, with which path attributes.
//
// A node advertises a Service's address to a peer when the node is not
// excluded (node.kubernetes.io/exclude-from-external-load-balancers), the
// peer and the advertisement both select the node, the advertisement
// selects the Service, the address's pool and the peer, the address is of
// the peer's family, and — for externalTrafficPolicy Local — the node has a
// ready endpoint of the Service. With Cluster every such node advertises
// it, so the router spreads the traffic over them (ECMP).
//
// When several advertisements give one node the same prefix for the same
// peer, it is advertised once with the union of their communities and
// large communities and the highest of their localPrefs.
type BGPAdvertisementSpec struct {
	// PoolSelector picks the LoadBalancerIPPools (by their labels) whose
	// addresses are advertised; empty means every pool.
	// +optional
	PoolSelector *metav1.LabelSelector `json:"poolSelector,omitempty"`
	// ServiceSelector picks the Services advertised; empty means all. The
	// keys io.kubernetes.service.namespace and io.kubernetes.service.name
	// match a Service's namespace and name.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// PeerSelector picks the BGPPeers (by their labels) the routes go to;
	// empty means every peer.
	// +optional
	PeerSelector *metav1.LabelSelector `json:"peerSelector,omitempty"`
	// NodeSelector picks the nodes that advertise; empty means every node
	// (that the peer selects).
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// Communities are attached to the routes (RFC 1997).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Communities []BGPCommunity `json:"communities,omitempty"`
	// LargeCommunities are attached to the routes (RFC 8092).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	LargeCommunities []BGPLargeCommunity `json:"largeCommunities,omitempty"`
	// LocalPref is the LOCAL_PREF attribute of the routes. It is sent to
	// iBGP peers only (peerASN equal to the node's local ASN): RFC 4271
	// §5.1.5 forbids it towards eBGP peers, so there it is left out.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref *int64 `json:"localPref,omitempty"`
	// AggregationLength is the prefix length IPv4 addresses are advertised
	// with: 32 advertises each address; a shorter length advertises the
	// prefix holding it (10.0.1.0/24 for 10.0.1.7 at 24) once for all the
	// addresses it holds. Addresses of Services with externalTrafficPolicy
	// Local are always advertised as /32: an aggregate would draw traffic
	// of other Services to a node without their endpoints.
	// +optional
	// +kubebuilder:default=32
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is AggregationLength for IPv6 addresses (/128
	// for externalTrafficPolicy Local).
	// +optional
	// +kubebuilder:default=128
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// BGPAdvertisementStatus reports problems with an advertisement as a
// whole.
type BGPAdvertisementStatus struct {
	// Conditions of the advertisement: Valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPAdvertisement makes the selected nodes advertise the selected
// Services' addresses to the selected BGPPeers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv;bgpadvs,categories=herald
// +kubebuilder:printcolumn:name="Aggregation",type=integer,JSONPath=".spec.aggregationLength"
// +kubebuilder:printcolumn:name="Aggregation V6",type=integer,JSONPath=".spec.aggregationLengthV6"
// +kubebuilder:printcolumn:name="Local Pref",type=integer,JSONPath=".spec.localPref"
// +kubebuilder:printcolumn:name="Communities",type=string,JSONPath=".spec.communities"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAdvertisementSpec   `json:"spec,omitempty"`
	Status BGPAdvertisementStatus `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisement.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

// AggregationLengthV4 is the IPv4 aggregation length (unset means 32).
func (s *BGPAdvertisementSpec) AggregationLengthV4() int {
	if s.AggregationLength == nil {
		return 32
	}
	return int(*s.AggregationLength)
}

// AggregationLengthIPv6 is the IPv6 aggregation length (unset means 128).
func (s *BGPAdvertisementSpec) AggregationLengthIPv6() int {
	if s.AggregationLengthV6 == nil {
		return 128
	}
	return int(*s.AggregationLengthV6)
}
