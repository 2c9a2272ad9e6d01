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

// CEL has no ordering on IP values, so the "start must not be greater than
// stop" rule below finds the first bit where the two addresses differ: for
// each prefix length k (with v = k-1), stop lies inside start/v but not
// start/k, and start has a 0 at that bit (start/k and start/v share their
// network address). The literal map of prefix lengths keeps the estimated
// cost bounded (an iteration variable of unknown size would not be); the
// two-variable comprehension needs Kubernetes 1.33 or newer. The tests in
// this package run the rule on the real API server.

// IPBlock is one range of a pool: a CIDR, or a start and an optional stop
// address (a lone start is a single address). Addresses are IPv4 or IPv6;
// a block holds one family.
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) != has(self.start)",message="exactly one of cidr or start must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.stop) || has(self.start)",message="stop requires start",fieldPath=".stop"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() == ip(self.stop).family()",message="start and stop must be of the same IP family",fieldPath=".stop"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() != ip(self.stop).family() || ip(self.start) == ip(self.stop) || {'1': '0', '2': '1', '3': '2', '4': '3', '5': '4', '6': '5', '7': '6', '8': '7', '9': '8', '10': '9', '11': '10', '12': '11', '13': '12', '14': '13', '15': '14', '16': '15', '17': '16', '18': '17', '19': '18', '20': '19', '21': '20', '22': '21', '23': '22', '24': '23', '25': '24', '26': '25', '27': '26', '28': '27', '29': '28', '30': '29', '31': '30', '32': '31', '33': '32', '34': '33', '35': '34', '36': '35', '37': '36', '38': '37', '39': '38', '40': '39', '41': '40', '42': '41', '43': '42', '44': '43', '45': '44', '46': '45', '47': '46', '48': '47', '49': '48', '50': '49', '51': '50', '52': '51', '53': '52', '54': '53', '55': '54', '56': '55', '57': '56', '58': '57', '59': '58', '60': '59', '61': '60', '62': '61', '63': '62', '64': '63', '65': '64', '66': '65', '67': '66', '68': '67', '69': '68', '70': '69', '71': '70', '72': '71', '73': '72', '74': '73', '75': '74', '76': '75', '77': '76', '78': '77', '79': '78', '80': '79', '81': '80', '82': '81', '83': '82', '84': '83', '85': '84', '86': '85', '87': '86', '88': '87', '89': '88', '90': '89', '91': '90', '92': '91', '93': '92', '94': '93', '95': '94', '96': '95', '97': '96', '98': '97', '99': '98', '100': '99', '101': '100', '102': '101', '103': '102', '104': '103', '105': '104', '106': '105', '107': '106', '108': '107', '109': '108', '110': '109', '111': '110', '112': '111', '113': '112', '114': '113', '115': '114', '116': '115', '117': '116', '118': '117', '119': '118', '120': '119', '121': '120', '122': '121', '123': '122', '124': '123', '125': '124', '126': '125', '127': '126', '128': '127'}.exists(k, v, int(k) <= (ip(self.start).family() == 4 ? 32 : 128) && cidr(self.start + '/' + v).containsIP(ip(self.stop)) && !cidr(self.start + '/' + k).containsIP(ip(self.stop)) && cidr(self.start + '/' + k).masked().ip() == cidr(self.start + '/' + v).masked().ip())",message="start must not be greater than stop",fieldPath=".stop"
type IPBlock struct {
	// CIDR is a block given as a prefix, such as 192.168.10.0/24 or
	// 2001:db8:10::/64. Unless the pool sets allowFirstLastIPs, its first
	// and last addresses are not handed out (except for /31, /32, /127, /128).
	// +optional
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 192.168.10.0/24 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",message="must not have bits set after the prefix length (write 192.168.10.0/24, not 192.168.10.1/24)"
	CIDR string `json:"cidr,omitempty"`
	// Start is the first address of the block.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!self.contains(':') || !self.contains('.')",message="write IPv6 addresses in hexadecimal, without an embedded dotted IPv4 part"
	Start string `json:"start,omitempty"`
	// Stop is the last address of the block, inclusive. Empty means Start.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!self.contains(':') || !self.contains('.')",message="write IPv6 addresses in hexadecimal, without an embedded dotted IPv4 part"
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
	// out stay with their Services. Always present (default false), so the
	// DISABLED column reads false rather than blank.
	// +optional
	// +kubebuilder:default=false
	Disabled bool `json:"disabled"`
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
	// ExcludedAddresses are addresses of the pool that an agent's probe
	// found in use by another host on the LAN before any Service had them
	// announced. They are not handed out until that agent probes them free
	// again. The agents' HeraldNode reports are the source; this is the
	// controller's summary of them per pool.
	// +optional
	// +listType=atomic
	ExcludedAddresses []ExcludedAddress `json:"excludedAddresses,omitempty"`
}

// ExcludedAddress is an address another host on the LAN uses.
type ExcludedAddress struct {
	// Address is the excluded address.
	Address string `json:"address"`
	// MAC is the other host's hardware address.
	MAC string `json:"mac"`
	// Node is the node whose probe found it.
	Node string `json:"node"`
	// Interface is where that node saw it.
	Interface string `json:"interface"`
	// Since is when it was found.
	Since metav1.Time `json:"since"`
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
