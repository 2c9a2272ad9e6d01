package cli

import (
	"os"
	"strings"
	"testing"
)

// Two replicas on one host get different leader identities.
func TestLeaderIdentityUnique(t *testing.T) {
	t.Setenv("POD_NAME", "")
	a, err := leaderIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, err := leaderIdentity()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if a == b || !strings.HasPrefix(a, host+"_") {
		t.Fatalf("identities %q and %q: want distinct, prefixed by the hostname %q", a, b, host)
	}
	t.Setenv("POD_NAME", "herald-controller-7d9f")
	if c, _ := leaderIdentity(); !strings.HasPrefix(c, "herald-controller-7d9f_") {
		t.Fatalf("identity %q does not start with the Pod's name", c)
	}
}
