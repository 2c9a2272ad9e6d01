package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of an L2AnnouncementPolicy.
const (
	// PolicyValidCondition is False when the policy cannot be applied as
	// written (an invalid selector); its message names the field.
	PolicyValidCondition = "Valid"
)

// L2AnnouncementPolicySpec says which nodes announce which Services'
// addresses on which interfaces.
type L2AnnouncementPolicySpec struct {
	// Interfaces are regular expressions (RE2) matched against node interface
	// names, OR-ed. Empty means every up, broadcast-capable interface that is
	// not enslaved to a bridge or bond.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:XValidation:rule="self.all(r, 'x'.matches(r) || !'x'.matches(r))",message="every entry must be a valid regular expression (RE2 syntax)"
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`
	// NodeSelector picks the nodes that may announce; empty means all nodes.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// ServiceSelector picks the Services announced; empty means all. The keys
	// io.kubernetes.service.namespace and io.kubernetes.service.name match a
	// Service's namespace and name.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// LoadBalancerIPs announces the Services' status.loadBalancer.ingress
	// addresses. Unset means true (unlike Cilium, whose default false is a
	// common reason for "EXTERNAL-IP assigned but unreachable").
	// +optional
	// +kubebuilder:default=true
	LoadBalancerIPs *bool `json:"loadBalancerIPs,omitempty"`
	// ExternalIPs announces the Services' spec.externalIPs.
	// +optional
	ExternalIPs bool `json:"externalIPs,omitempty"`
}

// L2AnnouncementPolicyStatus reports problems with a policy as a whole.
// Per-node problems (no interface matches on a node) are Events on the
// policy.
type L2AnnouncementPolicyStatus struct {
	// Conditions of the policy.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// L2AnnouncementPolicy makes one eligible node answer ARP and NDP for each
// address of the Services it selects.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=l2policy;l2policies,categories=herald
// +kubebuilder:printcolumn:name="LB IPs",type=boolean,JSONPath=".spec.loadBalancerIPs"
// +kubebuilder:printcolumn:name="External IPs",type=boolean,JSONPath=".spec.externalIPs"
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=".spec.interfaces"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type L2AnnouncementPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AnnouncementPolicySpec   `json:"spec,omitempty"`
	Status L2AnnouncementPolicyStatus `json:"status,omitempty"`
}

// L2AnnouncementPolicyList is a list of L2AnnouncementPolicy.
//
// +kubebuilder:object:root=true
type L2AnnouncementPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2AnnouncementPolicy `json:"items"`
}

// AnnouncesLoadBalancerIPs reports whether the policy announces the
// Services' load-balancer addresses (unset means true).
func (s *L2AnnouncementPolicySpec) AnnouncesLoadBalancerIPs() bool {
	return s.LoadBalancerIPs == nil || *s.LoadBalancerIPs
}
