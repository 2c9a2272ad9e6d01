// Package v1alpha1 holds Herald's API: LoadBalancerIPPool and
// L2AnnouncementPolicy in the group herald.dev, version v1alpha1.
//
// +kubebuilder:object:generate=true
// +groupName=herald.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of Herald's resources.
var GroupVersion = schema.GroupVersion{Group: "herald.dev", Version: "v1alpha1"}

// AddToScheme registers Herald's types with a runtime.Scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&LoadBalancerIPPool{}, &LoadBalancerIPPoolList{},
		&L2AnnouncementPolicy{}, &L2AnnouncementPolicyList{},
		&HeraldNode{}, &HeraldNodeList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
