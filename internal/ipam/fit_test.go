package ipam

import "testing"

// TestFitPool: one case per Fit, each checked against what the allocator
// itself does with that pool alone (Allocated exactly when FitOK).
func TestFitPool(t *testing.T) {
	v4 := mkPool(t, "v4", "192.168.10.0/30")
	v6 := mkPool(t, "v6", "2001:db8::/126")
	cases := []struct {
		name     string
		pool     Pool
		conflict ConflictReason
		svc      Service
		want     Fit
	}{
		{"serves", v4, "", mkSvc("web/a"), FitOK},
		{"pinned elsewhere", v4, "", mkSvc("web/a", pin("other")), FitPinnedElsewhere},
		{"pinned here", v4, "", mkSvc("web/a", pin("v4")), FitOK},
		{"selector", withSelector(v4, map[string]string{"tier": "edge"}), "", mkSvc("web/a"), FitNotSelected},
		{"selector matches", withSelector(v4, map[string]string{"tier": "edge"}), "", mkSvc("web/a", label("tier", "edge")), FitOK},
		{"conflict", v4, ConflictOverlap, mkSvc("web/a"), FitConflict},
		{"disabled", disabled(v4), "", mkSvc("web/a"), FitDisabled},
		{"family", v6, "", mkSvc("web/a"), FitNoFamily},
		{"dual stack takes one family", v6, "", mkSvc("web/a", dual(PreferDualStack)), FitOK},
		{"invalid request", v4, "", mkSvc("web/a", req("192.168.10.1", "192.168.10.2")), FitInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, msg := FitPool(c.pool, c.conflict, c.svc)
			if got != c.want || msg == "" {
				t.Fatalf("FitPool = %s (%q), want %s", got, msg, c.want)
			}
			if c.conflict != "" {
				return // the allocator finds conflicts itself, from overlaps
			}
			a := New()
			a.SetPools([]Pool{c.pool}, nil)
			res := a.Assign(c.svc)
			if (res.Reason == Allocated) != (got == FitOK) {
				t.Fatalf("allocator says %s (%s), FitPool says %s", res.Reason, res.Message, got)
			}
		})
	}
}
