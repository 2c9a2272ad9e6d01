package lab

import (
	"context"
	"strings"
	"testing"

	"github.com/herald-lb/herald/internal/bird"
	"github.com/herald-lb/herald/internal/testrequire"
)

// TestCoreConfig checks the core router's configuration with BIRD's own
// parser (bird -p) and that it says what the lab promises: AS 64514,
// multihop sessions from the LAN's nodes in AS 64513, the LAN resolved
// through the router.
func TestCoreConfig(t *testing.T) {
	topo, err := NewTopology("hl-", 3, false)
	if err != nil {
		t.Fatal(err)
	}
	topo.AddRouter()
	conf := coreConfig(topo)
	for _, want := range []string{
		"router id 192.168.21.2;",
		"route 192.168.10.0/24 via 192.168.21.1;",
		"local as 64514;",
		"neighbor range 192.168.10.0/24 as 64513;",
		"multihop 2;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("the core's configuration lacks %q:\n%s", want, conf)
		}
	}
	if err := bird.Available(); err != nil {
		testrequire.Missing(t, "BIRD 2: %v", err)
	}
	if err := bird.Check(context.Background(), conf); err != nil {
		t.Errorf("bird -p: %v\n%s", err, conf)
	}
}
