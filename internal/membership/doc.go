// Package membership tells which nodes are alive on one Ethernet segment,
// judged by the segment itself: every agent sends a small authenticated
// heartbeat on each announcing interface, and a peer whose heartbeats stop
// arriving on that interface is dead on that segment, whatever the API
// server or any other network says. A NIC, cable or switch-port failure
// therefore moves IPs; an API server outage does not.
//
// # Frames
//
// A heartbeat is a raw Ethernet frame with the IEEE 802 "local
// experimental" EtherType 0x88B5, sent to the broadcast address
// ff:ff:ff:ff:ff:ff. Not to 01:80:c2:00:00:0x: IEEE 802.1D reserves that
// block for link-local control protocols (STP, pause, LACP, 802.1X, LLDP),
// and compliant bridges — the Linux bridge included, by default — consume
// those frames instead of forwarding them, so heartbeats would never reach
// a peer behind a switch. Broadcast is flooded by every switch and accepted
// by every NIC without joining a group (IGMP snooping and multicast filters
// do not apply), and hosts that do not speak 0x88B5 drop the frames in the
// kernel at the cost of a few hundred bytes per node per interval.
//
// The payload (all integers big-endian):
//
//	off  len  field
//	  0    4  magic "HRLD"
//	  4    1  version (1)
//	  5    1  flags: bit 0 = leaving; other bits must be 0
//	  6    2  length n of the authenticated part (offset 0 .. end of entries)
//	  8    8  cluster hash: SHA-256(cluster ID)[0:8]
//	 16    8  incarnation (never 0; default: agent start time, Unix ns)
//	 24    8  sequence (from 1, per heartbeat, shared by its parts)
//	 32    2  interval in ms (1..65535)
//	 34    1  part index i (0..n-1)
//	 35    1  part count (1..64)
//	 36    1  node name length k (1..253)
//	 37    k  node name (printable ASCII)
//	37+k   2  entry count
//	  …       entries, strictly ascending by address (IPv4 before IPv6):
//	            1 tag byte (bit 0 eligible, bit 1 claimed, bit 7 IPv6;
//	            at least one of bits 0-1; other bits 0) then 4 or 16
//	            address bytes (IPv4-mapped IPv6 is carried as IPv4)
//	  n   16  HMAC-SHA256(key, payload[0:n]) truncated to 16 bytes
//
// Anything after the MAC (Ethernet padding) is ignored. Eligibility and
// claims travel as one merged, tagged address list (an IP is usually both),
// which costs 5 bytes per IPv4 and 17 per IPv6 address.
//
// A frame's payload never exceeds 1500 bytes (or a smaller interface MTU).
// A node eligible for more addresses than fit splits one heartbeat into
// several frames, "part i of n", sent back to back with the same sequence
// number; with a 20-byte node name one frame carries up to 285 IPv4 or 83
// IPv6 addresses, and a heartbeat may have up to 64 parts. Any accepted part
// proves the sender alive, but a receiver replaces the sender's lists only
// when every part of one sequence has arrived, so a lost part delays a
// state change by one interval and never shows a truncated claim list.
//
// # Authentication and replay
//
// The HMAC key comes from the cluster Secret, so a host on the LAN cannot
// forge a heartbeat to claim an IP or keep a dead node alive. Decode checks
// the fixed header, then the cluster hash (frames of another cluster on the
// same segment are dropped as "cluster", not as forgeries), then the MAC,
// and only then parses the rest. Frames failing the MAC are dropped and
// counted ("auth"). Replays are dropped and counted ("replay"): for each
// node name the receiver remembers the newest incarnation and, within it,
// the newest sequence and the parts already received; an older incarnation,
// an older sequence, or a part seen twice is a replay. This memory outlives
// the peer's death (up to 1024 names per segment, oldest dead evicted
// first), so a captured heartbeat replayed after its sender died cannot
// resurrect it. A restarted agent picks a new, larger incarnation and is
// accepted at once (its previous run's claims are forgotten).
//
// # Liveness
//
// Every node sends a heartbeat each Interval (default 50 ms) and,
// rate-limited to one per tenth of an interval (5 ms with the default), as
// soon as its claims change, so claim hand-overs take one frame's transit. A
// peer is dead on the segment when it has been silent for DeadAfter
// intervals (default 6) plus half an interval of slack: exactly DeadAfter
// consecutive heartbeats lost, without a merely late one counting as lost.
// With the defaults a dead peer is noticed 325–335 ms after its last
// heartbeat. Silence is counted
// only while this process runs: if the death check itself ran late (the
// process was descheduled or CPU-throttled), the stall is credited to every
// peer, and while heartbeat frames still wait unread in the socket the
// verdict waits for them (at most one interval). Without this, a stalled
// agent would see every peer die at once and claim every IP.
//
// False deaths under loss: with independent frame loss p, a peer is falsely
// declared dead when DeadAfter consecutive heartbeats are lost, which
// starts at a given heartbeat with probability (1-p)·p^DeadAfter. With the
// defaults (50 ms × 6, a death detected after about 300 ms) and a heavy
// p = 5% that is 1.5e-8 per heartbeat: one false death per 39 days per
// (sender, receiver) pair. 100 ms × 3 detects as fast but gives one false
// death every 840 s per pair at 5% loss, which is why the defaults trade a
// few more frames (20 per second per interface, ~100 bytes each) for
// robustness. At a realistic LAN loss of 0.1% either is quiet for years.
//
// # Use
//
// An agent creates one Member per announcing interface (New), runs it
// (Run), feeds it its eligibility and claims (SetState) and reads Updates
// or Snapshot to build placement's view. It should advertise eligibility
// only once the Member is Settled, so that while it warms up after a
// restart its peers keep (or take over) its IPs. On shutdown it calls
// Leave, keeps answering during a short grace window while it watches its
// successors claim, then cancels Run.
package membership
