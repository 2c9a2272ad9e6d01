package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons of a LoadBalancerIPPool.
const (
	// PoolConflictCondition is True when the pool overlaps an older pool,
	// overlaps itself, or contains a node's own address. A pool in conflict
	// hands out no address until the cause goes away.
	PoolConflictCondition = "PoolConflict"
	// IPsAvailableCondition is True while the pool has free addresses; its
	// message is the number of free addresses (the "IPS AVAILABLE" column).
	IPsAvailableCondition = "IPsAvailable"
)

// The "start must not be greater than stop" rule below compares zero-padded
// canonical forms of the two addresses (IPv6 "::" expanded), because CEL has
// no ordering on IP values. api/v1alpha1 tests exercise it on the real API
// server.

// IPBlock is one range of a pool: a CIDR, or a start and an optional stop
// address (a lone start is a single address). Addresses are IPv4 or IPv6;
// a block holds one family.
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) != has(self.start)",message="exactly one of cidr or start must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.stop) || has(self.start)",message="stop requires start",fieldPath=".stop"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() == ip(self.stop).family()",message="start and stop must be of the same IP family",fieldPath=".stop"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() != ip(self.stop).family() || (ip(self.start).family() == 4 ? string(ip(self.start)).split('.').map(p, ('00' + p).substring(size(p) - 1)).join(”) <= string(ip(self.stop)).split('.').map(p, ('00' + p).substring(size(p) - 1)).join(”) : string(ip(self.start)).split('::')[0].split(':').filter(g, g != ”).map(g, ('000' + g).substring(size(g) - 1)).join(”) + '00000000000000000000000000000000'.substring(0, 4 * (8 - size(string(ip(self.start)).split('::')[0].split(':').filter(g, g != ”)) - size((size(string(ip(self.start)).split('::')) > 1 ? string(ip(self.start)).split('::')[1] : ”).split(':').filter(g, g != ”)))) + (size(string(ip(self.start)).split('::')) > 1 ? string(ip(self.start)).split('::')[1] : ”).split(':').filter(g, g != ”).map(g, ('000' + g).substring(size(g) - 1)).join(”) <= string(ip(self.stop)).split('::')[0].split(':').filter(g, g != ”).map(g, ('000' + g).substring(size(g) - 1)).join(”) + '00000000000000000000000000000000'.substring(0, 4 * (8 - size(string(ip(self.stop)).split('::')[0].split(':').filter(g, g != ”)) - size((size(string(ip(self.stop)).split('::')) > 1 ? string(ip(self.stop)).split('::')[1] : ”).split(':').filter(g, g != ”)))) + (size(string(ip(self.stop)).split('::')) > 1 ? string(ip(self.stop)).split('::')[1] : ”).split(':').filter(g, g != ”).map(g, ('000' + g).substring(size(g) - 1)).join(”))",message="start must not be greater than stop",fieldPath=".stop"
type IPBlock struct {
	// CIDR is a block given as a prefix, such as 192.168.10.0/24 or
	// 2001:db8:10::/64. Unless the pool sets allowFirstLastIPs, its first
	// and last addresses are not handed out (except for /31, /32, /127, /128).
	// +optional
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",messageExpression="'must not have bits set after the prefix length; did you mean ' + string(cidr(self).masked()) + '?'"
	CIDR string `json:"cidr,omitempty"`
	// Start is the first address of the block.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	Start string `json:"start,omitempty"`
	// Stop is the last address of the block, inclusive. Empty means Start.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	Stop string `json:"stop,omitempty"`
}

// LoadBalancerIPPoolSpec is what addresses a pool hands out, and to whom.
type LoadBalancerIPPoolSpec struct {
	// Blocks are the address ranges of the pool.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +listType=atomic
	Blocks []IPBlock `json:"blocks"`
	// ServiceSelector picks the Services this pool serves; empty serves all.
	// The keys io.kubernetes.service.namespace and io.kubernetes.service.name
	// match a Service's namespace and name.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// Disabled stops new allocations from the pool; addresses already handed
	// out stay with their Services.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// AllowFirstLastIPs lets the pool hand out the first (network) and last
	// (broadcast) addresses of its CIDR blocks.
	// +optional
	AllowFirstLastIPs bool `json:"allowFirstLastIPs,omitempty"`
}

// LoadBalancerIPPoolStatus is what the controller reports about a pool.
type LoadBalancerIPPoolStatus struct {
	// Conditions are PoolConflict and IPsAvailable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// IPsTotal is the number of addresses in the pool (a string: IPv6 pools
	// exceed every integer type).
	// +optional
	IPsTotal string `json:"ipsTotal,omitempty"`
	// IPsUsed is the number of the pool's addresses held by Services.
	// +optional
	IPsUsed string `json:"ipsUsed,omitempty"`
	// IPsAvailable is IPsTotal minus IPsUsed.
	// +optional
	IPsAvailable string `json:"ipsAvailable,omitempty"`
}

// LoadBalancerIPPool is a set of addresses Herald hands out to Services of
// type LoadBalancer.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=lbpool;lbpools,categories=herald
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=".spec.disabled"
// +kubebuilder:printcolumn:name="Conflicting",type=string,JSONPath=".status.conditions[?(@.type==\"PoolConflict\")].status"
// +kubebuilder:printcolumn:name="IPs Available",type=string,JSONPath=".status.conditions[?(@.type==\"IPsAvailable\")].message"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type LoadBalancerIPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LoadBalancerIPPoolSpec   `json:"spec"`
	Status LoadBalancerIPPoolStatus `json:"status,omitempty"`
}

// LoadBalancerIPPoolList is a list of LoadBalancerIPPool.
//
// +kubebuilder:object:root=true
type LoadBalancerIPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LoadBalancerIPPool `json:"items"`
}
