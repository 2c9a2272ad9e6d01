// Package ipam is Herald's load-balancer IP allocator: pools of address
// blocks, the rules that decide which pool may serve which Service, sharing
// of one address between Services, dual stack, and pool conflicts.
//
// The package is pure: it knows nothing about Kubernetes. The controller
// reduces a Service to a small [Service] view and a LoadBalancerIPPool to a
// [Pool] before asking anything, and writes the answers back as status,
// conditions and events. Every operation is deterministic and costs
// O(log n) in the number of allocated addresses (no scans of address ranges).
package ipam

import (
	"math/big"
	"net/netip"
	"time"
)

// Family is an IP address family.
type Family int

// The address families, in the order Kubernetes lists them.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6", the spelling of Service.spec.ipFamilies.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	default:
		return "unknown"
	}
}

// FamilyOf returns the family of addr.
func FamilyOf(addr netip.Addr) Family {
	if addr.Is4() {
		return IPv4
	}
	return IPv6
}

// FamilyPolicy is a Service's spec.ipFamilyPolicy.
type FamilyPolicy string

// The family policies of a Service.
const (
	SingleStack      FamilyPolicy = "SingleStack"
	PreferDualStack  FamilyPolicy = "PreferDualStack"
	RequireDualStack FamilyPolicy = "RequireDualStack"
)

// Block is an inclusive range of addresses of one family.
type Block struct {
	First netip.Addr
	Last  netip.Addr
}

// Selector decides whether a pool serves a Service, given the Service's
// labels. The Kubernetes adapter wraps a labels.Selector; a nil Selector
// matches every Service.
type Selector interface {
	Matches(labels map[string]string) bool
}

// Pool is the allocator's view of a LoadBalancerIPPool.
type Pool struct {
	// Name identifies the pool; fresh allocations try pools in name order.
	Name string
	// Blocks are the pool's address ranges, already parsed (see ParseBlock).
	Blocks []Block
	// Selector picks the Services the pool serves; nil serves all.
	Selector Selector
	// Disabled stops new allocations; addresses already handed out stay.
	Disabled bool
	// Created orders overlapping pools: the newer one is in conflict.
	// Equal times are ordered by Name.
	Created time.Time
}

// NodeAddress is an address that a node of the cluster uses itself. A pool
// containing one is in conflict: announcing it would steal the node's address.
type NodeAddress struct {
	Node string
	Addr netip.Addr
}

// ConflictReason says why a pool is in conflict; empty means it is not.
type ConflictReason string

// The reasons a pool can be in conflict.
const (
	// ConflictOverlap: a block overlaps an older pool or another block of
	// the same pool.
	ConflictOverlap ConflictReason = "Overlap"
	// ConflictNodeAddress: a block contains a node's own address.
	ConflictNodeAddress ConflictReason = "NodeAddress"
)

// PoolStatus is what the allocator knows about one pool, for its status.
type PoolStatus struct {
	Name string
	// Conflict is empty unless the pool is in conflict; a pool in conflict
	// hands out nothing, and addresses only it contains are released.
	Conflict        ConflictReason
	ConflictMessage string
	// Total counts the pool's addresses (IPv6 pools can exceed uint64).
	Total *big.Int
	// Used counts distinct addresses of the pool held by Services.
	Used uint64
	// Available is Total minus Used.
	Available *big.Int
}

// Port is one service port, for the sharing rule "no port number twice".
type Port struct {
	Protocol string
	Port     int32
}

// Sharing is a Service's consent to share its address.
type Sharing struct {
	// Key must be equal on every Service sharing an address.
	Key string
	// AllowNamespaces lists the other namespaces whose Services may share
	// with this one; "*" allows all. A Service's own namespace is implied.
	AllowNamespaces []string
}

// Service is the allocator's view of a Service of type LoadBalancer that
// Herald serves.
type Service struct {
	// Key is "namespace/name"; it identifies the Service.
	Key       string
	Namespace string
	// Labels are the Service's labels plus the synthetic keys
	// io.kubernetes.service.namespace and io.kubernetes.service.name,
	// which pool selectors match against.
	Labels map[string]string
	// Families are the Service's spec.ipFamilies, primary first.
	Families []Family
	// Policy is the Service's spec.ipFamilyPolicy.
	Policy FamilyPolicy
	// Requested are the addresses the Service asks for (at most one per
	// family); when present, exactly these are assigned or none.
	Requested []netip.Addr
	// Pool pins the Service to the named pool; empty means any pool.
	Pool string
	// Sharing is nil for a Service that does not share its address.
	Sharing *Sharing
	// Ports are the Service's ports.
	Ports []Port
	// TrafficPolicyLocal is true for externalTrafficPolicy: Local.
	TrafficPolicyLocal bool
	// Selector is the Service's pod selector (compared for Local sharing).
	Selector map[string]string
	// Announced are addresses some node has announced for the Service at
	// least once. Users have put them in DNS and firewalls by now, so the
	// Service keeps them even when another host on the LAN is later found
	// using one (the announcing node defends it); only an address never
	// announced moves away from an excluded address.
	Announced []netip.Addr
}

// Reason says why a Service has, or has not, its addresses. The values are
// the reasons of the Service condition herald.dev/IPAllocated.
type Reason string

// The outcomes of an assignment.
const (
	Allocated            Reason = "Allocated"
	NoPool               Reason = "NoPool"
	OutOfIPs             Reason = "OutOfIPs"
	RequestedIPNotInPool Reason = "RequestedIPNotInPool"
	RequestedIPInUse     Reason = "RequestedIPInUse"
	SharingIncompatible  Reason = "SharingIncompatible"
	FamilyUnavailable    Reason = "FamilyUnavailable"
	AddressConflict      Reason = "AddressConflict"
	InvalidRequest       Reason = "InvalidRequest"
)

// Assignment is one address held by a Service and the pool it came from.
type Assignment struct {
	Addr netip.Addr
	Pool string
}

// Result is the outcome of Assign.
type Result struct {
	// Assigned are the Service's addresses after the call, primary family
	// first. Empty when Reason is not Allocated.
	Assigned []Assignment
	// Released are addresses the Service held before the call and no
	// longer holds.
	Released []Assignment
	// Reason is Allocated on success, else why the Service is pending.
	Reason Reason
	// Message explains the reason precisely, for a human.
	Message string
}
