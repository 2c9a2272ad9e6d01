package ipam

import (
	"errors"
	"math/big"
	"net/netip"
	"strings"
	"testing"
)

func TestParseBlock(t *testing.T) {
	tests := []struct {
		name                string
		cidr, start, stop   string
		allowFirstLast      bool
		first, last         string
		errField, errSubstr string
	}{
		{name: "range", start: "192.168.10.75", stop: "192.168.10.78", first: "192.168.10.75", last: "192.168.10.78"},
		{name: "lone start", start: "192.168.10.75", first: "192.168.10.75", last: "192.168.10.75"},
		{name: "start equals stop", start: "10.0.0.1", stop: "10.0.0.1", first: "10.0.0.1", last: "10.0.0.1"},
		{name: "ipv6 range", start: "2001:db8::10", stop: "2001:db8::ff", first: "2001:db8::10", last: "2001:db8::ff"},
		{name: "v4 /24 skips network and broadcast", cidr: "192.168.10.0/24", first: "192.168.10.1", last: "192.168.10.254"},
		{name: "v4 /24 allowFirstLast", cidr: "192.168.10.0/24", allowFirstLast: true, first: "192.168.10.0", last: "192.168.10.255"},
		{name: "v4 /30", cidr: "10.0.0.4/30", first: "10.0.0.5", last: "10.0.0.6"},
		{name: "v4 /31 keeps both", cidr: "10.0.0.4/31", first: "10.0.0.4", last: "10.0.0.5"},
		{name: "v4 /32", cidr: "10.0.0.4/32", first: "10.0.0.4", last: "10.0.0.4"},
		{name: "v4 /0", cidr: "0.0.0.0/0", first: "0.0.0.1", last: "255.255.255.254"},
		{name: "v4 /0 allowFirstLast", cidr: "0.0.0.0/0", allowFirstLast: true, first: "0.0.0.0", last: "255.255.255.255"},
		{name: "v6 /64", cidr: "2001:db8::/64", first: "2001:db8::1", last: "2001:db8::ffff:ffff:ffff:fffe"},
		{name: "v6 /120 allowFirstLast", cidr: "2001:db8::/120", allowFirstLast: true, first: "2001:db8::", last: "2001:db8::ff"},
		{name: "v6 /127 keeps both", cidr: "2001:db8::/127", first: "2001:db8::", last: "2001:db8::1"},
		{name: "v6 /128", cidr: "2001:db8::5/128", first: "2001:db8::5", last: "2001:db8::5"},
		{name: "v6 /8", cidr: "2000::/8", first: "2000::1", last: "20ff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"},
		{name: "v6 /1 top half", cidr: "8000::/1", allowFirstLast: true, first: "8000::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{name: "v6 just below the mapped range", start: "::1", stop: "::fffe:ffff:ffff", first: "::1", last: "::fffe:ffff:ffff"},
		{name: "v6 just above the mapped range", cidr: "::1:0:0:0/96", first: "::1:0:0:1", last: "::1:0:ffff:fffe"},
		{name: "v6 /65", cidr: "2001:db8::/65", allowFirstLast: true, first: "2001:db8::", last: "2001:db8::7fff:ffff:ffff:ffff"},

		{name: "neither", errField: "cidr", errSubstr: "one of cidr or start is required"},
		{name: "both cidr and start", cidr: "10.0.0.0/24", start: "10.0.0.1", errField: "cidr", errSubstr: "must not be set together"},
		{name: "both cidr and stop", cidr: "10.0.0.0/24", stop: "10.0.0.1", errField: "cidr", errSubstr: "must not be set together"},
		{name: "stop without start", stop: "10.0.0.1", errField: "start", errSubstr: "required when stop is set"},
		{name: "bad start", start: "10.0.0.300", errField: "start", errSubstr: "not a valid IP address"},
		{name: "bad stop", start: "10.0.0.1", stop: "banana", errField: "stop", errSubstr: "not a valid IP address"},
		{name: "mixed families", start: "10.0.0.1", stop: "2001:db8::1", errField: "stop", errSubstr: "is IPv6 but start \"10.0.0.1\" is IPv4"},
		{name: "start after stop", start: "10.0.0.9", stop: "10.0.0.1", errField: "stop", errSubstr: "is before start"},
		{name: "zone", start: "fe80::1%eth0", errField: "start", errSubstr: "zone"},
		{name: "4in6 start", start: "::ffff:10.0.0.1", errField: "start", errSubstr: "write 10.0.0.1"},
		{name: "4in6 cidr", cidr: "::ffff:10.0.0.0/120", errField: "cidr", errSubstr: "IPv4-mapped"},
		{name: "host bits", cidr: "192.168.10.1/24", errField: "cidr", errSubstr: "host bits set (the network is 192.168.10.0/24"},
		{name: "v6 host bits", cidr: "2001:db8::1/64", errField: "cidr", errSubstr: "host bits set"},
		{name: "bad prefix length", cidr: "10.0.0.0/33", errField: "cidr", errSubstr: "not a valid CIDR"},
		{name: "no slash", cidr: "10.0.0.0", errField: "cidr", errSubstr: "not a valid CIDR"},
		{name: "spaces", start: " 10.0.0.1", errField: "start", errSubstr: "not a valid IP address"},
		{name: "v6 /0 contains the mapped range", cidr: "::/0", allowFirstLast: true, errField: "cidr", errSubstr: "overlaps the IPv4-mapped range"},
		{name: "v6 /80 ends in the mapped range", cidr: "::/80", errField: "cidr", errSubstr: "overlaps the IPv4-mapped range"},
		{name: "range across the mapped range", start: "::1", stop: "::1:0:0:0", errField: "stop", errSubstr: "overlap the IPv4-mapped range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBlock(tt.cidr, tt.start, tt.stop, tt.allowFirstLast)
			if tt.errField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("ParseBlock = %v, %v; want a *FieldError", b, err)
				}
				if fe.Field != tt.errField || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("error %q (field %q); want field %q containing %q", err, fe.Field, tt.errField, tt.errSubstr)
				}
				if !strings.HasPrefix(err.Error(), tt.errField+": ") {
					t.Fatalf("error %q does not start with its field", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBlock: %v", err)
			}
			want := Block{First: netip.MustParseAddr(tt.first), Last: netip.MustParseAddr(tt.last)}
			if b != want {
				t.Fatalf("ParseBlock = %v; want %v", b, want)
			}
		})
	}
}

func TestParseBlockWrapsNetipError(t *testing.T) {
	_, err := ParseBlock("", "10.0.0.300", "", false)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Err == nil || errors.Unwrap(err) == nil {
		t.Fatalf("error %v does not wrap the netip error", err)
	}
}

func TestBlockMethods(t *testing.T) {
	b := Block{First: netip.MustParseAddr("192.168.10.75"), Last: netip.MustParseAddr("192.168.10.78")}
	if got := b.String(); got != "192.168.10.75-192.168.10.78" {
		t.Errorf("String = %q", got)
	}
	if got := b.Size(); got.Cmp(big.NewInt(4)) != 0 {
		t.Errorf("Size = %v", got)
	}
	if b.Family() != IPv4 {
		t.Errorf("Family = %v", b.Family())
	}
	for addr, want := range map[string]bool{
		"192.168.10.74": false, "192.168.10.75": true, "192.168.10.78": true, "192.168.10.79": false,
		"::ffff:192.168.10.76": false, "2001:db8::1": false,
	} {
		if got := b.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v; want %v", addr, got, want)
		}
	}
	if b.Contains(netip.Addr{}) {
		t.Error("Contains(invalid) = true")
	}
	one := Block{First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("10.0.0.1")}
	if one.String() != "10.0.0.1" || one.Size().Cmp(big.NewInt(1)) != 0 {
		t.Errorf("single: %q %v", one.String(), one.Size())
	}

	v6, err := ParseBlock("2000::/8", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).Lsh(big.NewInt(1), 120)
	want.Sub(want, big.NewInt(2))
	if v6.Size().Cmp(want) != 0 || v6.Family() != IPv6 {
		t.Errorf("/8: size %v family %v; want %v IPv6", v6.Size(), v6.Family(), want)
	}
	half, _ := ParseBlock("8000::/1", "", "", true)
	if half.Size().Cmp(new(big.Int).Lsh(big.NewInt(1), 127)) != 0 {
		t.Errorf("8000::/1 size %v", half.Size())
	}

	// Invalid blocks must not panic and must contain nothing.
	for _, bad := range []Block{
		{},
		{First: netip.MustParseAddr("10.0.0.9"), Last: netip.MustParseAddr("10.0.0.1")},
		{First: netip.MustParseAddr("10.0.0.1"), Last: netip.MustParseAddr("2001:db8::1")},
		{First: netip.MustParseAddr("fe80::1%eth0"), Last: netip.MustParseAddr("fe80::2")},
		{First: netip.MustParseAddr("10.0.0.1")},
		{First: netip.MustParseAddr("::1"), Last: netip.MustParseAddr("::ffff:10.0.0.1")},
		{First: netip.MustParseAddr("::ffff:10.0.0.1"), Last: netip.MustParseAddr("::ffff:10.0.0.1")},
	} {
		if bad.Family() != 0 || bad.Size().Sign() != 0 || bad.Contains(bad.First) || !strings.HasPrefix(bad.String(), "invalid") {
			t.Errorf("invalid block %#v: family %v size %v string %q", bad, bad.Family(), bad.Size(), bad.String())
		}
	}
}

func TestMergeBlocks(t *testing.T) {
	in := []Block{
		mustBlock(t, "10.0.0.1-10.0.0.5"),
		mustBlock(t, "10.0.0.3-10.0.0.4"),
		mustBlock(t, "10.0.0.6-10.0.0.8"),
		mustBlock(t, "10.0.0.10"),
		mustBlock(t, "255.255.255.250-255.255.255.255"),
		mustBlock(t, "255.255.255.255"),
		mustBlock(t, "::1-::2"),
	}
	got := mergeBlocks(in)
	want := []Block{
		mustBlock(t, "10.0.0.1-10.0.0.8"),
		mustBlock(t, "10.0.0.10"),
		mustBlock(t, "255.255.255.250-255.255.255.255"),
		mustBlock(t, "::1-::2"),
	}
	if len(got) != len(want) {
		t.Fatalf("merge = %v; want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("merge = %v; want %v", got, want)
		}
	}
}
