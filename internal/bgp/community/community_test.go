package community

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The patterns of the BGPAdvertisement CRD's rules (api/v1alpha1), checked
// against the generated CRD by TestCRDPatterns so they cannot drift.
const (
	crdFile             = "../../../config/crd/herald.dev_bgpadvertisements.yaml"
	crdCommunity        = `^((6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})|no-export|no-advertise|no-export-subconfed|local-as|no-peer|blackhole)$`
	crdLarge            = `^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`
	crdLargeNotReserved = `!self.startsWith(''4294967295:'')` // YAML doubles the quotes
)

// TestParse is the table of both parsers: what they accept (with the
// value and the text String gives back), what they refuse and why, and
// for each input whether the CRD admits it — every value the CRD admits
// must parse, and every value that parses must print as something that
// parses to the same value.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Community
		str     string
		crd     bool // the CRD admits it
		wantErr string
	}{
		{in: "0:0", want: 0, str: "0:0", crd: true},
		{in: "64512:100", want: 64512<<16 | 100, str: "64512:100", crd: true},
		{in: "65535:65535", want: 0xFFFFFFFF, str: "65535:65535", crd: true},
		{in: "0100:007", want: 100<<16 | 7, str: "100:7", crd: true},
		{in: "no-export", want: NoExport, str: "no-export", crd: true},
		{in: "no-advertise", want: NoAdvertise, str: "no-advertise", crd: true},
		{in: "no-export-subconfed", want: NoExportSubconfed, str: "no-export-subconfed", crd: true},
		{in: "local-as", want: NoExportSubconfed, str: "no-export-subconfed", crd: true},
		{in: "no-peer", want: NoPeer, str: "no-peer", crd: true},
		{in: "blackhole", want: Blackhole, str: "blackhole", crd: true},
		// Well-known values written as numbers print by name.
		{in: "65535:65281", want: NoExport, str: "no-export", crd: true},
		{in: "65535:666", want: Blackhole, str: "blackhole", crd: true},
		{in: "65535:0", want: GracefulShutdown, str: "graceful-shutdown", crd: true},
		// Names the CRD does not admit but String prints.
		{in: "graceful-shutdown", want: GracefulShutdown, str: "graceful-shutdown"},
		{in: "accept-own", want: AcceptOwn, str: "accept-own"},
		{in: "llgr-stale", want: LLGRStale, str: "llgr-stale"},
		{in: "no-llgr", want: NoLLGR, str: "no-llgr"},
		// Leading zeros past the CRD's four digits.
		{in: "000001:1", want: 1<<16 | 1, str: "1:1"},

		{in: "", wantErr: "want ADMIN:VALUE"},
		{in: "65000", wantErr: "want ADMIN:VALUE"},
		{in: "no-exports", wantErr: "want ADMIN:VALUE"},
		{in: "NO-EXPORT", wantErr: "want ADMIN:VALUE"},
		{in: " no-export", wantErr: "want ADMIN:VALUE"},
		{in: "65536:1", wantErr: "administrator: \"65536\" is out of range (0-65535)"},
		{in: "1:65536", wantErr: "value: \"65536\" is out of range"},
		{in: "1:2:3", wantErr: "not a decimal number"},
		{in: "-1:2", wantErr: "not a decimal number"},
		{in: "+1:2", wantErr: "not a decimal number"},
		{in: "0x10:2", wantErr: "not a decimal number"},
		{in: "1 :2", wantErr: "not a decimal number"},
		{in: " 1:2", wantErr: "not a decimal number"},
		{in: ":2", wantErr: "administrator: empty number"},
		{in: "1:", wantErr: "value: empty number"},
	} {
		admitted := regexp.MustCompile(crdCommunity).MatchString(tc.in)
		if admitted != tc.crd {
			t.Errorf("%q: the CRD admits it: %v, the table says %v", tc.in, admitted, tc.crd)
		}
		got, err := Parse(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %#x, %v; want %#x", tc.in, uint32(got), err, uint32(tc.want))
			continue
		}
		if got.String() != tc.str {
			t.Errorf("Community(%#x).String() = %q, want %q", uint32(got), got.String(), tc.str)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q) = %v, %v; want %v", got.String(), again, err, got)
		}
	}

	for _, tc := range []struct {
		in      string
		want    Large
		str     string
		crd     bool
		wantErr string
	}{
		{in: "64512:1:2", want: Large{64512, 1, 2}, str: "64512:1:2", crd: true},
		{in: "0:0:0", want: Large{}, str: "0:0:0", crd: true},
		{in: "007:1:1", want: Large{7, 1, 1}, str: "7:1:1", crd: true},
		{in: "4294967294:4294967295:4294967295", want: Large{4294967294, 4294967295, 4294967295}, str: "4294967294:4294967295:4294967295", crd: true},
		{in: "1:4294967295:4294967295", want: Large{1, 4294967295, 4294967295}, str: "1:4294967295:4294967295", crd: true},

		// The speaker's own administrator: refused here and at admission.
		{in: "4294967295:1:2", wantErr: "the global administrator 4294967295 is reserved"},
		{in: "4294967295:0:0", wantErr: "reserved"},
		{in: "4294967296:1:2", wantErr: "global administrator: \"4294967296\" is out of range (0-4294967295)"},
		{in: "1:4294967296:2", wantErr: "first value: \"4294967296\" is out of range"},
		{in: "1:2:4294967296", wantErr: "second value: \"4294967296\" is out of range"},
		{in: "1:2", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "1:2:3:4", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "no-export", wantErr: "want GLOBAL:LOCAL1:LOCAL2"},
		{in: "a:b:c", wantErr: "not a decimal number"},
		{in: "1::3", wantErr: "first value: empty number"},
		{in: "1:-2:3", wantErr: "not a decimal number"},
		{in: " 1:2:3", wantErr: "not a decimal number"},
	} {
		admitted := crdAdmitsLarge(tc.in)
		if admitted != tc.crd {
			t.Errorf("%q: the CRD admits it: %v, the table says %v", tc.in, admitted, tc.crd)
		}
		got, err := ParseLarge(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLarge(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseLarge(%q) = %v, %v; want %v printed %q", tc.in, got, err, tc.want, tc.str)
			continue
		}
		if again, err := ParseLarge(got.String()); err != nil || again != got {
			t.Errorf("ParseLarge(%q) = %v, %v; want %v", got.String(), again, err, got)
		}
	}

	// Validate refuses only the reserved administrator.
	if err := (Large{Global: ReservedASN, Local1: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Validate of the reserved administrator: %v", err)
	}
	if err := (Large{Global: ReservedASN - 1, Local1: ReservedASN, Local2: ReservedASN}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	// Order: numeric, field by field.
	cs := []Community{NoExport, 1<<16 | 2, 2 << 16, 1<<16 | 1}
	slices.SortFunc(cs, Compare)
	if want := []Community{1<<16 | 1, 1<<16 | 2, 2 << 16, NoExport}; !slices.Equal(cs, want) {
		t.Errorf("sorted communities %v, want %v", cs, want)
	}
	ls := []Large{{2, 0, 0}, {1, 5, 0}, {1, 2, 9}, {1, 2, 3}, {0, 9, 9}}
	slices.SortFunc(ls, CompareLarge)
	if want := []Large{{0, 9, 9}, {1, 2, 3}, {1, 2, 9}, {1, 5, 0}, {2, 0, 0}}; !slices.Equal(ls, want) {
		t.Errorf("sorted large communities %v, want %v", ls, want)
	}
}

// crdAdmitsLarge is the CRD's two rules on a large community.
func crdAdmitsLarge(s string) bool {
	if !regexp.MustCompile(crdLarge).MatchString(s) || strings.HasPrefix(s, "4294967295:") {
		return false
	}
	for _, p := range strings.Split(s, ":") {
		if n, _ := strconv.ParseUint(p, 10, 64); n > 4294967295 {
			return false
		}
	}
	return true
}

// TestCRDPatterns checks that this test's copies of the CRD's patterns are
// the generated CRD's.
func TestCRDPatterns(t *testing.T) {
	b, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{crdCommunity, crdLarge, crdLargeNotReserved} {
		if !strings.Contains(string(b), p) {
			t.Errorf("%s lacks the pattern %s: update this test's copy", crdFile, p)
		}
	}
}

// FuzzParse checks on any input: what the CRD admits parses, what parses
// prints back to itself, and nothing parses to the reserved
// administrator.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"65000:100", "no-export", "local-as", "1:2:3", "", ":", "65536:0", "4294967295:1:1", "0100:007"} {
		f.Add(s)
	}
	reCommunity := regexp.MustCompile(crdCommunity)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if reCommunity.MatchString(s) && err != nil {
			t.Fatalf("the CRD admits community %q, Parse refuses it: %v", s, err)
		}
		if err == nil {
			if again, err := Parse(c.String()); err != nil || again != c {
				t.Fatalf("%q → %v → %v, %v", s, c, again, err)
			}
		}
		l, err := ParseLarge(s)
		if crdAdmitsLarge(s) && err != nil {
			t.Fatalf("the CRD admits large community %q, ParseLarge refuses it: %v", s, err)
		}
		if err == nil {
			if l.Global == ReservedASN {
				t.Fatalf("%q parsed to the reserved administrator", s)
			}
			if again, err := ParseLarge(l.String()); err != nil || again != l {
				t.Fatalf("%q → %v → %v, %v", s, l, again, err)
			}
		}
	})
}
