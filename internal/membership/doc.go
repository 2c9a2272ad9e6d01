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
// experimental" EtherType 0x88B5, sent to the group address
// 03:48:52:4c:44:00 (GroupAddr): the I/G bit (multicast) and the U/L bit
// (locally administered) of the first octet set, "HRLD" in the next four.
// Each Member joins it on its interface (PACKET_ADD_MEMBERSHIP), so a NIC
// that filters multicast by address passes heartbeats to Herald nodes
// only: the hosts of the LAN that are not Herald nodes — Wi-Fi clients
// included, where the access point bridges the segment — drop them in
// their NIC instead of taking an interrupt and a kernel pass for each
// (earlier versions used broadcast, which every host must take).
//
// What the network does with it:
//
//   - Switches flood it like any multicast address they have not learnt:
//     to every port of the VLAN. IGMP and MLD snooping concern only the IP
//     multicast ranges 01:00:5e:… and 33:33:…, which this address is not
//     in, so snooping switches flood it too. A switch configured to drop
//     unknown (unregistered) multicast — "unknown multicast flood"
//     disabled, sometimes called multicast filtering mode "filter
//     unregistered" — drops every heartbeat: the nodes then do not see
//     each other and all claim the segment's addresses. Such a port
//     setting must be off on Herald's segments (or the address added as a
//     static multicast entry for the nodes' ports).
//   - Not 01:80:c2:00:00:0x: IEEE 802.1D reserves that block for
//     link-local control protocols (STP, pause, LACP, 802.1X, LLDP), and
//     compliant bridges — the Linux bridge included, by default — consume
//     those frames instead of forwarding them.
//   - Address filters are often hashes (a NIC's 64- to 4096-bucket table;
//     Linux macvlan devices use 256 buckets), so a host whose own groups
//     share a bucket still receives heartbeats; its kernel then drops them
//     (no socket listens for 0x88B5) at the cost it paid for every
//     broadcast heartbeat before. Virtual links without a filter — veth,
//     the Linux bridge, most tunnels — deliver them to every port, as
//     broadcast.
//   - A Member on a VLAN, bond or macvlan interface joins on that
//     interface and the kernel propagates the membership to the lower
//     device. An SR-IOV virtual function may limit the groups it may join
//     (some need "trust on" for any multicast beyond a few addresses): if
//     its Member hears no peer, check that first.
//
// The tests check in network namespaces that a Member on a macvlan device
// (which filters multicast like a NIC) hears and is heard, that a socket
// on a macvlan that has not joined the group receives no heartbeat while
// one on the host's veth does, and that the same socket receives them
// once joined. A hardware NIC's filter and a physical switch's handling
// cannot be tested there.
//
// A heartbeat carries the sender's state — the addresses it is eligible
// for and those it claims — only when the state changed or a peer asked
// for it; every other heartbeat carries the state's 8-byte digest instead
// (see "State" below). The payload (all integers big-endian):
//
//	off    len  field
//	  0      4  magic "HRLD"
//	  4      1  version (3)
//	  5      1  flags: bit 0 = leaving, bit 1 = challenge, bit 2 = full
//	            (the heartbeat carries the full state); other bits 0
//	  6      2  length n of the authenticated part (offset 0 .. end of
//	            entries)
//	  8      8  cluster hash: SHA-256(cluster ID)[0:8]
//	 16      8  incarnation (never 0; default: agent start time, Unix ns)
//	 24      8  sequence (from 1, per heartbeat, shared by its parts)
//	 32      2  interval in ms (1..65535)
//	 34      1  part index i (0..n-1)
//	 35      1  part count (1..64; 1 unless full)
//	 36      8  state digest: StateDigest of the sender's current
//	            eligible and claimed addresses (every part of a full
//	            heartbeat carries the digest of the whole)
//	 44      1  key count m (1..4)
//	 45     4m  key IDs, distinct: per key of the sender's keyring,
//	            SHA-256("herald heartbeat key v1" 0x00 key)[0:4]
//	45+4m    1  node name length k (1..253)
//	46+4m    k  node name (printable ASCII)
//	46+4m+k  1  echo count e (0..32; the encoder fills only part 0)
//	47+4m+k 8e  echoed identity tokens, 8 bytes each:
//	            SHA-256(node name 0x00 incarnation)[0:8] of a challenger
//	  …      1  request count r (0..32; the encoder fills only part 0)
//	  …     8r  requested identity tokens: peers whose full state the
//	            sender asks for
//	  …      2  entry count (0 unless full)
//	  …         entries, strictly ascending by address (IPv4 before IPv6):
//	            1 tag byte (bit 0 eligible, bit 1 claimed, bit 7 IPv6;
//	            at least one of bits 0-1; other bits 0) then 4 or 16
//	            address bytes (IPv4-mapped IPv6 is carried as IPv4)
//	  n    16m  MAC list: for each key ID in order,
//	            HMAC-SHA256(that key, payload[0:n]) truncated to 16 bytes
//
// Anything after the MAC list (Ethernet padding) is ignored. Eligibility
// and claims travel as one merged, tagged address list (an IP is usually
// both), which costs 5 bytes per IPv4 and 17 per IPv6 address. A heartbeat
// without the full state is one frame of 64 bytes plus the node name and
// 20 per key: 104 bytes on the wire with a 20-byte name and one key,
// whatever the number of addresses.
//
// Version 2 frames (no digest, no requests, the lists in every heartbeat,
// sent to broadcast) are malformed to this version and the reverse:
// agents of different frame versions on one segment is not a supported
// state. They do not see each other at all (each drops the other's frames
// as malformed, never as forgeries; a version 2 agent behind a filtering
// NIC does not even receive version 3 frames), so both groups claim the
// segment's addresses; upgrade every agent of a segment together.
//
// A frame's payload never exceeds 1500 bytes (or a smaller interface MTU).
// A full state larger than fits is split into several frames, "part i of
// n", sent back to back with the same sequence number; with a 20-byte node
// name and one key one frame carries up to 282 IPv4 or 82 IPv6 addresses
// (each further key takes 20 bytes, each echoed or requested token 8
// bytes of the first part), and a heartbeat may have up to 64 parts. Any
// accepted part proves the sender alive, but a receiver replaces the
// sender's lists only when every part of one sequence has arrived and the
// lists hash to the digest they carry, so a lost part never shows a
// truncated claim list.
//
// # State: digests, full states and requests
//
// Herald's heartbeat cost follows what changes, not what exists. Before
// version 3 every heartbeat (20 per second per interface) carried every
// address: with 1000 addresses four frames and 5.4 KB per heartbeat,
// encoded, signed, sent, received, authenticated and parsed 20 times a
// second by every node, for a state that changes a few times a day. Now:
//
//   - Every heartbeat carries the digest of its sender's state: the first
//     8 bytes of SHA-256 over "herald heartbeat state v3" 0x00 and the
//     state's entry list as frames carry it (StateDigest). The sender
//     computes it when the state changes (SetState), never per heartbeat;
//     an unchanged state costs one small frame per interval, encoded into
//     a reused buffer: no re-encoding of address lists, no sorting, no
//     allocation that grows with the state. A receiver compares 8 bytes.
//   - When the state changes, the full state goes out at once (triggered,
//     rate-limited as claim changes always were, so a hand-over still
//     takes one frame's transit) and in the next StateRepeats-1 periodic
//     heartbeats, so that a lost frame delays a change by one interval,
//     exactly as when every heartbeat carried the lists.
//   - A receiver whose lists for a peer do not match the peer's digest —
//     it just started, the peer restarted or came back after a silence, or
//     it lost the full state and its repeats — asks for the full state:
//     it puts the peer's identity token (which names the peer's current
//     run) in the request list of its heartbeats, in one sent at once the
//     first time and then in its periodic ones while the state is not
//     current (at most once per half of the peer's interval; up to 32
//     tokens per heartbeat, with more the least recently asked first).
//     The peer answers with a full heartbeat at once, or with its next
//     heartbeat if it sent a full state less than a quarter interval ago:
//     however many ask, a node sends about four full states per interval
//     at most. The answer is multicast, so everyone missing it catches up.
//     A node joining a segment asks each peer once: every peer's state is
//     known about one round trip after it is first heard, well within the
//     time a node takes to settle.
//   - The empty state's digest is known to everyone, so peers eligible for
//     nothing — every agent while it settles — need no request.
//   - A digest, not a version counter: a receiver checks that the lists
//     it holds are the peer's current state, whatever happened in
//     between. A peer that went A → B → A while frames were lost is
//     current again without asking; lists assembled from parts must hash
//     to the digest to be taken, which also catches a bug on either side.
//     Eight bytes make an accidental collision (2^-64 per comparison)
//     irrelevant, and only the key holders' frames are authenticated, so
//     no one else can choose states to make one.
//   - The leaving flag is in every frame's header, not in the digest: it
//     applies from the first leaving frame whether or not the lists are
//     current, so a graceful hand-over is as fast as before.
//
// What placement sees while a peer's state is not current: its previous
// lists, unchanged, and the peer stays live (Snapshot.Peers). A peer's
// claims never vanish and never appear except when (a) a complete full
// state with the advertised digest arrives, replacing the lists at once;
// (b) the peer dies (DeadAfter intervals without any frame of it); or (c)
// it restarts (its old run's lists go with it; the new run is live once
// verified and its state known). The alternatives are unsafe: treating a
// stale peer as claiming nothing would let a worse-ranked node see an
// address unclaimed and answer for it next to the peer that still answers
// (two answerers); dropping it from the live peers would be a false death
// on every lost frame (its addresses taken by others). The previous lists
// are a state the peer really had, a little earlier, and placement already
// works on views that lag behind a peer by a frame's transit: a claim is
// answered only once no worse-ranked node still claims the address, and a
// holder keeps answering until the owner claims it. A stale view only
// lengthens that lag — the hand-overs that depend on the change being seen
// wait for the full state (about one interval after the loss) — and never
// makes two nodes answer or none. A peer whose state has never been known
// (just heard, restarted, back after a death) is not live at all, as
// before version 3 a peer whose first heartbeat had not arrived complete
// was not. herald_membership_peers_state_stale counts the live peers shown
// with their previous lists; herald_membership_full_states_sent_total
// (by reason: change, request) and
// herald_membership_state_requests_sent_total show the protocol at work.
//
// # Keys and rotation
//
// The HMAC keys come from the cluster's heartbeat Secret, so a host on the
// LAN cannot forge a heartbeat to claim an IP or keep a dead node alive.
// The Secret may hold up to MaxKeys keys (a Keyring), and a frame carries
// one MAC per key of its sender's ring, each labelled by the key's 4-byte
// ID (its Fingerprint, not secret). A receiver checks the MAC of the first
// key ID it holds and accepts the frame when it verifies.
//
// Frames are signed with every key rather than only the newest so that a
// rotation never splits the cluster. Agents load a new version of the
// Secret seconds apart (SetKeys, without a restart), so during a rotation
// some sign with {old} while others already have {old, new}, and later
// some have {old, new} while others have {new}. Each such pair still
// shares a key in both directions: rotate by adding the new key, waiting
// until every agent reports it (Peer.Fingerprints, metric
// herald_membership_key_info), then removing the old one. Signing only
// with the newest key would make an agent that has it unreadable to one
// that has not loaded it yet. The cost is 20 bytes per extra key and frame
// (a 4-byte ID and a 16-byte MAC) and one HMAC per extra key and frame
// sent; receiving still costs at most one HMAC per frame, and a frame
// naming none of the receiver's keys costs none, so forged frames are
// cheap to drop. All MACs cover the key ID list, which therefore cannot be
// altered without the keys.
//
// # Key mismatch
//
// A frame that carries this cluster's hash but fails authentication (no
// key ID in common, or a MAC that does not verify) most likely comes from
// a Herald agent with another Secret. It is dropped ("auth"), but Decode
// also extracts, without trusting them and bounds-checked, the sender's
// node name, key IDs and Ethernet source (AuthError). Frames with a valid
// name are also counted per claimed name
// (herald_membership_key_mismatch_total: at most 64 names per Member, then
// "other"), and the Member lists their senders in Snapshot.Mismatched (at
// most 64, the least recently heard evicted; an entry expires like a live
// peer, DeadAfter of our intervals plus slack after its last frame) and
// logs each at most once per 10 s, with both sides' fingerprints. A change
// of that list is published at most once per interval, since anyone can
// send such frames. Nothing else is done with them: a mismatched sender is
// never a peer and never influences placement, even when it claims the
// name of a live peer.
//
// # Authentication and replay
//
// Decode checks the fixed header and the key ID list (so that it knows
// where the MACs are), then the cluster hash (frames of another cluster on
// the same segment are dropped as "cluster", not as forgeries), then one
// MAC, and only then parses the rest. Replays are dropped and counted
// ("replay"): for each node name the receiver remembers the newest
// incarnation and, within it, the newest sequence and the parts already
// received; an older incarnation, an older sequence, or a part seen twice
// is a replay. This memory outlives the peer's death (up to 1024 names per
// segment, oldest dead evicted first), so a captured heartbeat replayed to
// the same receiver after its sender died cannot resurrect it.
//
// That memory dies with the receiver's process, though: a restarted
// receiver has never seen the frames an attacker captured, and would
// accept a dead node's old heartbeats as new. So authenticated frames
// alone only prove who sent them, not when; liveness also needs proof of
// freshness, which a challenge and echo give without comparing any clock:
//
//   - A Member's identity token names its incarnation: the first 8 bytes
//     of SHA-256(node name || 0x00 || incarnation big-endian).
//   - A Member is unverified about a peer incarnation until an
//     authenticated frame of that incarnation echoes its token. An
//     unverified peer is not live (not in Snapshot.Peers), but its frames
//     still move the replay window, so they are not replayable later
//     (herald_membership_heartbeats_unverified_total counts them).
//   - While it has a heard but unverified peer, and until it has settled
//     after starting, a Member sets the challenge flag in its heartbeats,
//     and sends one at once when a peer becomes heard but unverified.
//   - A Member that hears an authenticated challenge echoes the
//     challenger's token in its heartbeats for as long as the challenges
//     go on and 4 heartbeats more, and sends one at once for a new
//     challenger (both rate-limited like claim changes). Up to 32 tokens
//     ride in a frame; with more challengers they take turns.
//   - A peer is live only once its state is known and its own heartbeats
//     since the verification name that state (their digest matches):
//     lists learnt from frames replayed before the verification show only
//     if the verified peer says they are its current state. Requests name
//     the requested run's token, so a replayed request cannot ask a
//     restarted node for anything, and answering one only multicasts a
//     state every peer may see anyway.
//   - Once verified, a peer incarnation stays verified until it is
//     declared dead or restarts. A dead peer heard again, even with the
//     same incarnation (a healed partition), is verified again.
//
// Incarnations strictly increase, so a frame can never carry the token of
// an incarnation that did not exist when it was sent: replaying captured
// heartbeats to a restarted receiver at best puts their sender in its
// replay window, never among its peers. A relay of another segment's
// heartbeats (same cluster, same keys) does not make their senders peers
// either, unless it also carries this segment's challenges back. The
// asymmetric case is covered too: when a Member's receive path is cut and
// restored while its peer kept hearing it, the peer has no reason to echo
// by itself, but the Member's challenge makes it echo again, so the peer
// is live again one frame's transit after its next heartbeat arrives.
//
// No node compares its clock with another's: incarnations are only
// compared among one sender's own runs, and freshness comes from echoes.
// Any clock skew between nodes is therefore fine; the only requirement is
// that an agent's own incarnation grows across its restarts (the default,
// its start time, needs its clock not to step back past its previous
// start).
//
// What verification does not cover: a peer that dies and comes back with
// the same incarnation is verified again by the same token, so frames it
// sent while echoing this Member's token (while this Member challenged,
// plus 4 heartbeats) would verify it if replayed. Using that needs an
// attacker who kept exactly those frames from this Member — dropping them
// selectively on the path — and replays them after the peer died: one
// who controls the switch, and who can deny service more simply anyway. A
// receiver restart has no such gap, since its token is new.
//
// # Liveness
//
// Every node sends a heartbeat each Interval (default 50 ms) and,
// rate-limited to one per tenth of an interval (5 ms with the default), as
// soon as its state changes, so claim hand-overs take one frame's transit.
// Any authenticated frame of a peer's current run proves it alive,
// whether or not it carries the lists: a heartbeat without them is as
// good a proof as one with them. A peer is dead on the segment when it
// has been silent for DeadAfter intervals (default 6) plus half an
// interval of slack: exactly DeadAfter consecutive heartbeats lost,
// without a merely late one counting as lost. With the defaults a dead
// peer is noticed 325–335 ms after its last heartbeat. Verification and
// the digests change none of this: a verified peer stays verified, and a
// peer whose state is not current stays live, so its death and its claim
// changes take exactly as long as they would without them. Silence is
// counted only while this process runs: if the death check itself ran late
// (the process was descheduled or CPU-throttled), the stall is credited to
// every peer, and the frames still queued are read, each at the arrival
// time the kernel stamped on it, before any verdict. Without this, a
// stalled agent would see every peer die at once and claim every IP.
//
// False deaths under loss: with independent frame loss p, a peer is falsely
// declared dead when DeadAfter consecutive heartbeats are lost, which
// starts at a given heartbeat with probability (1-p)·p^DeadAfter. With the
// defaults (50 ms × 6, a death detected after about 300 ms) and a heavy
// p = 5% that is 1.5e-8 per heartbeat: one false death per 39 days per
// (sender, receiver) pair; at 1% it is 1e-12 per heartbeat, one per 1600
// years per pair. 100 ms × 3 detects as fast but gives one false death
// every 840 s per pair at 5% loss, which is why the defaults trade a few
// more frames (20 per second per interface, 104 bytes each when nothing
// changes) for robustness. At a realistic LAN loss of 0.1% either is quiet
// for years. (When every heartbeat carried the lists, a large state's
// heartbeat was several frames and any one of them proved liveness, so a
// heartbeat was lost only when all were; now an idle heartbeat is one
// frame, and the arithmetic above is exactly the one that always applied
// to nodes with up to a few hundred addresses.)
//
// # Receiving: one wake-up per interval
//
// On a quiet segment nearly every frame is a peer's plain heartbeat, which
// only proves it alive: 20 a second per peer with the defaults. A Member
// does not wake for those. A socket filter (classic BPF, run by the kernel
// on each frame) sorts the heartbeats into two sockets:
//
//   - the wake socket keeps every frame that needs its receiver at once
//     or changes what it knows: the leaving, challenge or full flag set,
//     or an echo or request list that is not empty. A goroutine reads it
//     as frames arrive, so hand-overs, verification and state changes take
//     a frame's transit, as before;
//   - the beat socket keeps every other frame (and any too short for the
//     filter to read, to be counted as malformed). It is outside the Go
//     runtime's poller, and Run reads it when it wakes anyway: at each of
//     its own heartbeats and before each death verdict. The kernel stamps
//     each frame with its arrival time (SO_TIMESTAMPNS), and a frame read
//     late counts from when it arrived, so deadlines stay exact.
//
// Before the wake socket's frame is handled, the beat socket is read, so
// each peer's frames are handled in the order they were sent. Heartbeats
// are sent, and the beat socket read, with raw system calls (the socket is
// non-blocking, so they never block): a call through syscall.Syscall wakes
// the runtime's monitor thread, which then polls every 20 µs until the
// process sleeps again. An
// idle agent thus wakes once per interval and once per death check, not
// once per peer's frame; with 3 nodes its CPU fell from 13.5 to about 4
// millicores, and the saving grows with the number of peers. The filter
// reads unauthenticated bytes: a forged frame can only choose its queue,
// and is authenticated like any other once read.
//
// # Use
//
// An agent creates one Member per announcing interface (New, with the
// Keyring of the heartbeat Secret), runs it (Run), feeds it its eligibility
// and claims (SetState: cheap when nothing changed, so it may be called on
// every re-plan), passes it every new version of the Secret (SetKeys) and
// reads Updates or Snapshot to build placement's view. It should advertise
// eligibility only once the Member is Settled — after DeadAfter+1
// intervals plus half an interval, one interval more than a death takes,
// for the challenge round trip (which carries the state requests too), and
// once it knows the state of every peer it verified (waiting up to as long
// again for that) — so that while it warms up after a restart its peers
// keep (or take over) its IPs. On shutdown it calls Leave, keeps answering during a short grace
// window while it watches its successors claim, then cancels Run.
package membership
