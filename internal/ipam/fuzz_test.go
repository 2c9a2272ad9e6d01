package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func FuzzParseBlock(f *testing.F) {
	for _, s := range []struct {
		cidr, start, stop string
		all               bool
	}{
		{"192.168.10.0/24", "", "", false},
		{"192.168.10.0/24", "", "", true},
		{"192.168.10.1/24", "", "", false},
		{"10.0.0.4/31", "", "", false},
		{"10.0.0.4/32", "", "", false},
		{"2001:db8::/64", "", "", false},
		{"2000::/8", "", "", false},
		{"::/0", "", "", true},
		{"2001:db8::/127", "", "", false},
		{"::ffff:10.0.0.0/104", "", "", false},
		{"", "192.168.10.75", "192.168.10.78", false},
		{"", "192.168.10.75", "", false},
		{"", "10.0.0.9", "10.0.0.1", false},
		{"", "10.0.0.1", "2001:db8::1", false},
		{"", "fe80::1%eth0", "", false},
		{"", "", "10.0.0.1", false},
		{"", "", "", false},
		{"10.0.0.0/8", "10.0.0.1", "", false},
		{"10.0.0.0/33", "", "", false},
		{"", "255.255.255.255", "255.255.255.255", false},
	} {
		f.Add(s.cidr, s.start, s.stop, s.all)
	}
	f.Fuzz(func(t *testing.T, cidr, start, stop string, allowFirstLast bool) {
		b, err := ParseBlock(cidr, start, stop, allowFirstLast)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Field != "cidr" && fe.Field != "start" && fe.Field != "stop" {
				t.Fatalf("error names field %q", fe.Field)
			}
			if !strings.HasPrefix(err.Error(), fe.Field+": ") {
				t.Fatalf("error %q does not start with its field", err)
			}
			if b != (Block{}) {
				t.Fatalf("block %v returned with error", b)
			}
			return
		}
		// Exactly one form was given.
		if (cidr != "") == (start != "") || (cidr != "" && stop != "") {
			t.Fatalf("accepted cidr=%q start=%q stop=%q", cidr, start, stop)
		}
		if !b.valid() || b.Last.Less(b.First) || b.First.Is4() != b.Last.Is4() {
			t.Fatalf("invalid block %v", b)
		}
		if b.First.Zone() != "" || b.First.Is4In6() || b.Last.Is4In6() {
			t.Fatalf("unplain block %v", b)
		}
		if b.Size().Sign() <= 0 || !b.Contains(b.First) || !b.Contains(b.Last) {
			t.Fatalf("block %v size %v", b, b.Size())
		}
		if b.Family() != FamilyOf(b.First) {
			t.Fatalf("family %v", b.Family())
		}
		if p := b.First.Prev(); p.IsValid() && b.Contains(p) {
			t.Fatalf("%v contains %v", b, p)
		}
		if n := b.Last.Next(); n.IsValid() && b.Contains(n) {
			t.Fatalf("%v contains %v", b, n)
		}
		if cidr == "" {
			// A range round-trips through its String form.
			s, e, _ := strings.Cut(b.String(), "-")
			b2, err := ParseBlock("", s, e, false)
			if err != nil || b2 != b {
				t.Fatalf("round trip %v -> %q -> %v, %v", b, b.String(), b2, err)
			}
			return
		}
		p := netip.MustParsePrefix(cidr)
		if p != p.Masked() {
			t.Fatalf("accepted non-canonical %q", cidr)
		}
		host := p.Addr().BitLen() - p.Bits()
		want := new(big.Int).Lsh(big.NewInt(1), uint(host))
		if !allowFirstLast && host > 1 {
			want.Sub(want, big.NewInt(2))
		}
		if b.Size().Cmp(want) != 0 {
			t.Fatalf("%q: size %v; want %v", cidr, b.Size(), want)
		}
		if !p.Contains(b.First) || !p.Contains(b.Last) {
			t.Fatalf("%q: block %v outside the prefix", cidr, b)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add("10.0.0.1", "", "", "", "", uint8(0))
	f.Add("2001:db8::1, 10.0.0.1", "", "blue", "k", "a,b", uint8(0))
	f.Add("", "192.168.10.80", "", "", "", uint8(1))
	f.Add("10.0.0.1,10.0.0.2", "", "", "", "", uint8(2))
	f.Add("10.0.0.1,,", "10.0.0.2", "", "k", "*", uint8(3))
	f.Add("fe80::1%eth0", "::ffff:1.2.3.4", "p", "", "", uint8(4))
	f.Add(" ", "10.0.0.300", "", "k", "Bad_NS,", uint8(5))
	f.Add("10.0.0.1, 10.0.0.1", "", "", "  ", "x", uint8(6))
	f.Fuzz(func(t *testing.T, ips, lbIP, pool, key, crossNS string, which uint8) {
		// which picks which annotation of each setting carries the value.
		ann := map[string]string{}
		if ips != "" {
			ann[ipSources()[int(which)%len(ipSources())]] = ips
		}
		if pool != "" {
			ann[poolSources()[int(which>>3)%len(poolSources())]] = pool
		}
		if key != "" {
			ann[sharingSources()[int(which>>5)%len(sharingSources())]] = key
		}
		if crossNS != "" {
			ann[crossNamespaceSources()[int(which>>7)%len(crossNamespaceSources())]] = crossNS
		}
		req, err := ParseRequest(ann, lbIP)
		if err != nil {
			for _, e := range joined(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *FieldError", e)
				}
				if fe.Field != FieldLoadBalancerIP && !strings.HasPrefix(fe.Field, "metadata.annotations[") {
					t.Fatalf("error names field %q", fe.Field)
				}
			}
			if !isZeroRequest(req) {
				t.Fatalf("request %+v with error", req)
			}
			return
		}
		if len(req.Requested) > 2 {
			t.Fatalf("%d addresses", len(req.Requested))
		}
		for i, a := range req.Requested {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("address %v", a)
			}
			for _, b := range req.Requested[:i] {
				if FamilyOf(a) == FamilyOf(b) {
					t.Fatalf("two %s addresses %v", FamilyOf(a), req.Requested)
				}
			}
		}
		if (len(req.Requested) > 0) != (req.IPsFrom != "") {
			t.Fatalf("IPsFrom %q with %v", req.IPsFrom, req.Requested)
		}
		if len(req.Requested) > 0 {
			// Canonical form round-trips.
			var parts []string
			for _, a := range req.Requested {
				parts = append(parts, a.String())
			}
			again, err := ParseRequest(map[string]string{AnnotationIPs: strings.Join(parts, ",")}, "")
			if err != nil || !slices.Equal(again.Requested, req.Requested) {
				t.Fatalf("round trip %v: %v, %v", req.Requested, again.Requested, err)
			}
		}
		if (req.Pool != "") != (req.PoolFrom != "") || req.Pool != strings.TrimSpace(req.Pool) {
			t.Fatalf("pool %q from %q", req.Pool, req.PoolFrom)
		}
		if req.Sharing != nil {
			if req.Sharing.Key == "" || req.SharingFrom == "" || req.Sharing.Key != strings.TrimSpace(req.Sharing.Key) {
				t.Fatalf("sharing %+v from %q", req.Sharing, req.SharingFrom)
			}
			for _, ns := range req.Sharing.AllowNamespaces {
				if ns != "*" && !isDNSLabel(ns) {
					t.Fatalf("namespace %q", ns)
				}
			}
		} else if strings.TrimSpace(key) != "" || req.SharingFrom != "" {
			t.Fatalf("key %q ignored", key)
		}
	})
}

func isZeroRequest(r Request) bool {
	return r.Requested == nil && r.Pool == "" && r.Sharing == nil && r.IPsFrom == "" && r.PoolFrom == "" && r.SharingFrom == ""
}

// FuzzAllocator interprets bytes as a sequence of allocator operations on a
// small address space and checks every internal index and the validity of
// every successful assignment after each one.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New()
		poolSets := [][]Pool{
			{mkPool(t, "a", "10.0.0.1-10.0.0.4"), mkPool(t, "b", "10.0.0.3-10.0.0.8"), mkPool(t, "v6", "2001:db8::1-2001:db8::3")},
			{disabled(mkPool(t, "a", "10.0.0.1-10.0.0.4")), mkPool(t, "c", "10.0.0.9-10.0.0.10", "10.0.0.10-10.0.0.11")},
			{withSelector(mkPool(t, "a", "10.0.0.1-10.0.0.6"), map[string]string{"tier": "web"}), mkPool(t, "v6", "2001:db8::/126")},
		}
		a.SetPools(poolSets[0], nil)
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		for steps := 0; len(data) > 0 && steps < 200; steps++ {
			op := next()
			key := fmt.Sprintf("ns%d/s%d", op&1, (op>>1)&7)
			switch op >> 4 {
			case 0:
				a.SetPools(poolSets[next()%len(poolSets)], []NodeAddress{{Node: "n", Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(next() % 16)})}})
			case 1:
				a.SetExcluded(map[netip.Addr]string{netip.AddrFrom4([4]byte{10, 0, 0, byte(next() % 12)}): ""})
			case 2, 3:
				a.Release(key)
			case 4:
				a.Adopt(fuzzSvc(key, next()), []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(next() % 12)})})
			default:
				s := fuzzSvc(key, next())
				r := a.Assign(s)
				if r.Reason == Allocated {
					checkValid(t, a, s, r)
				} else if len(r.Assigned) != 0 || a.Lookup(key) != nil {
					t.Fatalf("failed Assign holds: %s", describe(r))
				}
			}
			checkInvariants(t, a)
		}
	})
}

// fuzzSvc derives a Service from one byte.
func fuzzSvc(key string, b int) Service {
	var mods []func(*Service)
	if b&1 != 0 {
		mods = append(mods, share([]string{"k", "j"}[(b>>1)&1], "*"), ports(int32((b>>2)&3)))
	}
	switch (b >> 4) & 3 {
	case 1:
		mods = append(mods, dual(PreferDualStack))
	case 2:
		mods = append(mods, dual(RequireDualStack))
	case 3:
		mods = append(mods, req(fmt.Sprintf("10.0.0.%d", 1+(b>>2)&7)))
	}
	if b&64 != 0 {
		mods = append(mods, label("tier", "web"))
	}
	if b&128 != 0 {
		mods = append(mods, pin([]string{"a", "c"}[(b>>1)&1]))
	}
	return mkSvc(key, mods...)
}
