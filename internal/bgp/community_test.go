package bgp

import (
	"strings"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Community
		str     string
		wantErr string
	}{
		{in: "65000:100", want: 65000<<16 | 100, str: "65000:100"},
		{in: "0:0", want: 0, str: "0:0"},
		{in: "65535:65535", want: 0xFFFFFFFF, str: "65535:65535"},
		{in: " 1:2 ", want: 1<<16 | 2, str: "1:2"},
		{in: "no-export", want: 0xFFFFFF01, str: "no-export"},
		{in: "NO-EXPORT", want: 0xFFFFFF01, str: "no-export"},
		{in: "no-advertise", want: 0xFFFFFF02, str: "no-advertise"},
		{in: "no-export-subconfed", want: 0xFFFFFF03, str: "no-export-subconfed"},
		{in: "no-peer", want: 0xFFFFFF04, str: "no-peer"},
		{in: "blackhole", want: 0xFFFF029A, str: "blackhole"},
		{in: "graceful-shutdown", want: 0xFFFF0000, str: "graceful-shutdown"},
		{in: "accept-own", want: 0xFFFF0001, str: "accept-own"},
		{in: "llgr-stale", want: 0xFFFF0006, str: "llgr-stale"},
		{in: "no-llgr", want: 0xFFFF0007, str: "no-llgr"},
		// A well-known value written as numbers reads back by name.
		{in: "65535:65281", want: 0xFFFFFF01, str: "no-export"},
		{in: "", wantErr: "want ADMIN:VALUE"},
		{in: "65000", wantErr: "want ADMIN:VALUE"},
		{in: "no-such-name", wantErr: "want ADMIN:VALUE"},
		{in: "65536:1", wantErr: "out of range"},
		{in: "1:65536", wantErr: "out of range"},
		{in: "1:2:3", wantErr: "not a decimal number"},
		{in: "-1:2", wantErr: "not a decimal number"},
		{in: "+1:2", wantErr: "not a decimal number"},
		{in: "0x10:2", wantErr: "not a decimal number"},
		{in: ":2", wantErr: "empty number"},
		{in: "1:", wantErr: "empty number"},
		{in: "1 :2", wantErr: "not a decimal number"},
	} {
		got, err := ParseCommunity(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCommunity(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCommunity(%q) = %#x, %v; want %#x", tc.in, uint32(got), err, uint32(tc.want))
			continue
		}
		if got.String() != tc.str {
			t.Errorf("Community(%#x).String() = %q, want %q", uint32(got), got.String(), tc.str)
		}
		// What String prints parses back to the same value.
		if again, err := ParseCommunity(got.String()); err != nil || again != got {
			t.Errorf("ParseCommunity(%q) = %v, %v; want %v", got.String(), again, err, got)
		}
	}
}

func TestParseLargeCommunity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    LargeCommunity
		wantErr string
	}{
		{in: "64512:1:2", want: LargeCommunity{64512, 1, 2}},
		{in: "0:0:0", want: LargeCommunity{}},
		{in: "4294967294:4294967295:4294967295", want: LargeCommunity{4294967294, 4294967295, 4294967295}},
		{in: " 1:2:3 ", want: LargeCommunity{1, 2, 3}},
		{in: "4294967295:1:2", wantErr: "reserved"},
		{in: "4294967296:1:2", wantErr: "out of range"},
		{in: "1:2", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "1:2:3:4", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "a:b:c", wantErr: "not a decimal number"},
		{in: "1::3", wantErr: "empty number"},
		{in: "1:-2:3", wantErr: "not a decimal number"},
	} {
		got, err := ParseLargeCommunity(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLargeCommunity(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLargeCommunity(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if again, err := ParseLargeCommunity(got.String()); err != nil || again != got {
			t.Errorf("ParseLargeCommunity(%q) = %v, %v; want %v", got.String(), again, err, got)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "no-export", "1:2:3", "", ":", "65536:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		if again, err := ParseCommunity(c.String()); err != nil || again != c {
			t.Fatalf("%q → %v → %v, %v", s, c, again, err)
		}
		l, err := ParseLargeCommunity(s)
		if err == nil && l.Global == reservedASN {
			t.Fatalf("%q parsed to the reserved administrator", s)
		}
	})
}
