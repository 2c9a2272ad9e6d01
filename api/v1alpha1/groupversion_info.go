// Package v1alpha1 holds Herald's API in the group herald.dev, version
// v1alpha1: LoadBalancerIPPool, L2AnnouncementPolicy, HeraldNode (each
// agent's report), and for BGP BGPPeer, BGPAdvertisement and
// BGPNodeOverride.
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
		&BGPPeer{}, &BGPPeerList{},
		&BGPAdvertisement{}, &BGPAdvertisementList{},
		&BGPNodeOverride{}, &BGPNodeOverrideList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
