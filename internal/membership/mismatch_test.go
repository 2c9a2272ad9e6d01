package membership

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMismatchTable(t *testing.T) {
	const deadline = 350 * time.Millisecond
	mt := newMismatchTable(3, deadline)
	id3, id4 := keyID([]byte(testKey3)), keyID([]byte(testKey4))
	hw := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	now := t0()

	steps := []struct {
		name    string
		node    string
		ids     []KeyID
		changed bool
		want    []string // nodes listed after the step
	}{
		{"new sender", "a", []KeyID{id3}, true, []string{"a"}},
		{"same again", "a", []KeyID{id3}, false, []string{"a"}},
		{"other keys", "a", []KeyID{id3, id4}, true, []string{"a"}},
		{"second sender", "b", []KeyID{id4}, true, []string{"a", "b"}},
		{"third", "c", []KeyID{id4}, true, []string{"a", "b", "c"}},
		{"b again", "b", []KeyID{id4}, false, []string{"a", "b", "c"}},
		{"fourth evicts the least recently heard (a)", "d", []KeyID{id3}, true, []string{"b", "c", "d"}},
	}
	for _, s := range steps {
		now = now.Add(10 * time.Millisecond)
		e, changed := mt.observe(s.node, hw, s.ids, now)
		if changed != s.changed {
			t.Errorf("%s: changed %v, want %v", s.name, changed, s.changed)
		}
		if e.node != s.node || !e.lastHeard.Equal(now) {
			t.Errorf("%s: entry %+v", s.name, e)
		}
		var got []string
		for _, m := range mt.list() {
			got = append(got, m.Node)
		}
		if !slices.Equal(got, s.want) {
			t.Fatalf("%s: listed %v, want %v", s.name, got, s.want)
		}
	}
	l := mt.list()
	if !slices.Equal(l[0].Fingerprints, []string{id4.String()}) || !bytes.Equal(l[0].HardwareAddr, hw) || !l[0].LastHeard.Equal(t0().Add(60*time.Millisecond)) {
		t.Errorf("entry b: %+v", l[0])
	}
	// Expiry like a peer: silent for the deadline is still listed, more is
	// not; a stall of ours is not silence.
	lastB := t0().Add(60 * time.Millisecond)
	mt.pause(100 * time.Millisecond)
	if mt.expire(lastB.Add(deadline + 50*time.Millisecond)) {
		t.Fatal("expired within the deadline plus our stall")
	}
	if !mt.expire(lastB.Add(deadline + 101*time.Millisecond)) {
		t.Fatal("nothing expired")
	}
	// b and c (heard 10 ms before b) went, d (10 ms after) stays.
	if got := mt.list(); len(got) != 1 || got[0].Node != "d" {
		t.Fatalf("after expiry: %+v", got)
	}
	if mt.expire(t0().Add(time.Hour)); mt.list() != nil {
		t.Fatal("entries outlived their deadline")
	}
}

func TestKeyMismatchLabels(t *testing.T) {
	mets, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	im := mets.forInterface("eth0")
	for i := range maxMismatches + 10 {
		im.keyMismatch(fmt.Sprintf("n%d", i)).Inc()
	}
	im.keyMismatch("n0").Inc()
	if got := len(im.mismatchPeers); got != maxMismatches {
		t.Errorf("%d peer label values, want %d", got, maxMismatches)
	}
	if n := testutil.CollectAndCount(mets.mismatch); n != maxMismatches+1 {
		t.Errorf("%d key_mismatch_total series, want %d (names + other)", n, maxMismatches+1)
	}
	if got := testutil.ToFloat64(mets.mismatch.WithLabelValues("eth0", "other")); got != 10 {
		t.Errorf("other = %v, want 10", got)
	}
	if got := testutil.ToFloat64(mets.mismatch.WithLabelValues("eth0", "n0")); got != 2 {
		t.Errorf("n0 = %v, want 2", got)
	}

	// key_info follows the ring.
	im.setKeys(nil, testRing(t, testKey, testKey2))
	im.setKeys(testRing(t, testKey, testKey2), testRing(t, testKey2, testKey3))
	if n := testutil.CollectAndCount(mets.keyInfo); n != 2 {
		t.Errorf("%d key_info series, want 2", n)
	}
	for _, k := range []string{testKey2, testKey3} {
		if got := testutil.ToFloat64(mets.keyInfo.WithLabelValues("eth0", Fingerprint([]byte(k)))); got != 1 {
			t.Errorf("key_info of %s = %v", Fingerprint([]byte(k)), got)
		}
	}
	im.setKeys(testRing(t, testKey2, testKey3), nil)
	if n := testutil.CollectAndCount(mets.keyInfo); n != 0 {
		t.Errorf("%d key_info series after removing every key", n)
	}
}
