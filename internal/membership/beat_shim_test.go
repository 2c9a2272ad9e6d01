package membership

// idleBeat returns the heartbeat a node whose state has not changed sends
// each interval: hb's digest, without its lists. The scale benchmarks
// (scale_bench_test.go) use it so that they run unchanged against the
// previous frame version, whose idle heartbeat carried the lists.
func idleBeat(hb Heartbeat) Heartbeat {
	hb.Digest = StateDigest(hb.Eligible, hb.Claims)
	hb.Full, hb.Eligible, hb.Claims = false, nil, nil
	return hb
}
