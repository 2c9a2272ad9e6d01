package crd

import "testing"

func TestDefinitions(t *testing.T) {
	defs, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bgpadvertisements.herald.dev", "bgpnodeoverrides.herald.dev", "bgppeers.herald.dev",
		"heraldnodes.herald.dev", "l2announcementpolicies.herald.dev", "loadbalancerippools.herald.dev"}
	if len(defs) != len(want) {
		t.Fatalf("%d CRDs, want %d", len(defs), len(want))
	}
	for i, d := range defs {
		if d.Name != want[i] || len(d.Spec.Versions) == 0 || d.Spec.Versions[0].Schema == nil {
			t.Errorf("CRD %d: %s with %d versions, want %s with a schema", i, d.Name, len(d.Spec.Versions), want[i])
		}
	}
}
