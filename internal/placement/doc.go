// Package placement decides which node answers for which load-balancer IP on
// one segment. It is pure: no I/O, no clocks, no Kubernetes; every function
// is deterministic in its inputs, so every agent that sees the same
// heartbeats reaches the same answer, and tests can replay any situation.
//
// # Ownership
//
// The target owner of an IP is the candidate with the highest rendezvous
// (highest-random-weight) score for that IP, where a candidate is a node
// that is live on the segment, eligible for the IP (it says so in its own
// heartbeats) and not leaving. Rendezvous hashing spreads IPs evenly over
// the candidates and moves only the IPs of a node that goes away (and, when
// a node joins, only the IPs it now wins). Ties in score are broken by node
// name so that the order is total.
//
// Score is a wire-compatible contract: all agents of a cluster, of any
// version, must compute the same score, so its definition (see Score) never
// changes.
//
// # Claims and the hand-over protocol
//
// Ownership is computed, but answering is gated by claims, which every node
// publishes in its heartbeats. Decide turns one node's view of one IP into
// two bits: claim (publish the IP in my heartbeats) and answer (reply to
// ARP/NDP for it). The rules are:
//
//   - A node that is not a candidate (not eligible, or leaving) neither
//     claims nor answers.
//
//   - A candidate that sees a better-ranked candidate claim the IP releases
//     it: it stops answering at once and drops the claim from its next
//     heartbeat.
//
//   - The target owner claims the IP. It answers only while no worse-ranked
//     candidate claims it; those yield within one interval of hearing its
//     claim.
//
//   - A candidate that already claims the IP but is not the target owner
//     keeps claiming (and answering, under the same rule) until the owner
//     claims, so the IP is never left without an answerer while the owner
//     has not acted yet.
//
//   - A candidate never starts a new claim unless it is the target owner and
//     its view is settled (it has listened to the segment, and been
//     eligible, for at least one heartbeat interval), so that peers'
//     eligibility has arrived before it grabs an unclaimed IP.
//
//   - A target owner that became eligible while another candidate held the
//     IP (View.Defer: a drain ended, a Local Service gained an endpoint)
//     does not claim it while that candidate claims it, and claims it as
//     soon as nobody does. Only a node that joins the segment (a restart)
//     takes its share back, so placement stays even without moving an
//     address that is served well.
//
// A planned move between two live nodes that hear each other (a
// better-ranked node joins or becomes eligible) is therefore break-before-
// make with a causal gap only: the new owner N claims without answering; the
// old owner O receives that heartbeat, stops answering and sends a heartbeat
// without the claim; N receives it (or O's death, DeadAfter intervals later)
// and only then answers, and sends gratuitous ARP. O stops before its
// release is sent and N starts after it is received, so at most one node
// answers at any moment; the gap is one frame's transit when the membership
// layer sends a heartbeat as soon as claims change, one interval at worst if
// that frame is lost. Clients with a cached ARP entry keep sending to O
// during the gap, and O still forwards, so no request fails.
//
// Overlap (two answerers) is possible only while views disagree, and lasts
// until their heartbeats cross (one interval at most): two nodes that both
// took an unclaimed IP before hearing each other's claim, or the two sides
// of a partition. When a partition heals, both sides stop answering the IPs
// the other side also claims, the worse one releases, and the better one
// answers when it hears the release: a gap of at most one interval rather
// than an overlap. The one deliberate overlap is the graceful-leave grace
// window described below.
//
// Answering only while no worse claimant is heard is what keeps one-way
// link failures safe: if B stops hearing A, B takes A's IPs, and A, which
// still hears B's claims, stops answering them instead of answering along
// with B for as long as the fault lasts.
//
// # Leaving
//
// A node that announces it is leaving is not a candidate, so its successor
// (the best remaining candidate) claims and answers at once: a leaving
// node's claim never makes anyone wait. The leaving node's own Decide says
// neither claim nor answer, but its caller keeps answering for a short grace
// window and may stop early once Decision.OwnerClaims reports that the
// successor has claimed the IP; with immediate heartbeats that bounds the
// overlap to one frame's transit and leaves no gap.
//
// # Liveness
//
// Placement does not judge liveness: the caller passes the nodes its
// membership layer sees alive on the segment. A claimant waits only for
// worse-ranked claimants it hears, and the score order is total, so chains
// of waiting nodes descend in rank and end in a claimant that waits for
// nobody and answers: whatever the views, once heartbeats have flowed for an
// interval some candidate answers for every IP that has one.
package placement
