package l2

import (
	"net/netip"
)

// Solicited-node group memberships. SetOwned only records which groups are
// wanted (r.groups counts the owned addresses in each); the joins and leaves
// — a PACKET_ADD_MEMBERSHIP on the packet socket and an MLD join on an
// ICMPv6 socket per group — are made by syncGroups, in the background when
// many change at once. The kernel keeps these memberships in lists, so each
// join or leave costs time proportional to the groups already joined (about
// 0.1–0.3 ms per group at 10 000 on the benchmark machine): a fail-over
// moving thousands of IPv6 addresses would otherwise hold SetOwned, and the
// agent's loop, for seconds. The kernel filter is attached first, so the
// addresses are answered meanwhile by unicast (neighbour unreachability
// detection) and by all-nodes solicitations; joins go before leaves.

// inlineGroupChanges is the most membership changes SetOwned makes itself;
// more go to the background worker.
const inlineGroupChanges = 32

// groupBatch is the most changes the worker makes per pass, between which
// it takes r.mu to see new wishes.
const groupBatch = 128

// wantGroupLocked counts addr in (delta +1) or out of (delta −1) its
// solicited-node group and marks the group for syncing when its count
// crossed zero. r.mu held.
func (r *Responder) wantGroupLocked(addr netip.Addr, delta int) {
	group, _, err := SolicitedNodeGroup(addr)
	if err != nil {
		r.log.Warn("no solicited-node group", "ip", addr.String(), "err", err)
		return
	}
	n := r.groups[group] + delta
	switch {
	case n > 0:
		r.groups[group] = n
	default:
		delete(r.groups, group)
	}
	if (n > 0) != r.joined[group] {
		r.groupPending[group] = struct{}{}
	} else {
		delete(r.groupPending, group)
	}
}

// kickGroupsLocked makes the pending membership changes: at once when they
// are few and no worker is busy, else in a worker goroutine. r.mu held.
func (r *Responder) kickGroupsLocked() {
	if len(r.groupPending) == 0 || r.groupWorker {
		return
	}
	if len(r.groupPending) <= inlineGroupChanges {
		ops := r.takeGroupOpsLocked(len(r.groupPending))
		r.applyGroupOps(ops)
		r.finishGroupOpsLocked(ops)
		return
	}
	r.groupWorker = true
	go r.groupLoop()
}

type groupOp struct {
	group netip.Addr
	join  bool
}

// takeGroupOpsLocked takes up to n pending changes, joins first.
func (r *Responder) takeGroupOpsLocked(n int) []groupOp {
	var ops []groupOp
	for _, join := range []bool{true, false} {
		for g := range r.groupPending {
			if len(ops) == n {
				break
			}
			want := r.groups[g] > 0
			if want != join {
				continue
			}
			delete(r.groupPending, g)
			if want != r.joined[g] {
				ops = append(ops, groupOp{group: g, join: want})
			}
		}
	}
	return ops
}

// finishGroupOpsLocked records the changes made. A group joined or left
// here stays so even if the syscall failed: it is logged, and retrying
// every SetOwned would not help. r.mu held.
func (r *Responder) finishGroupOpsLocked(ops []groupOp) {
	for _, op := range ops {
		if op.join {
			r.joined[op.group] = true
		} else {
			delete(r.joined, op.group)
		}
		// Wanted otherwise meanwhile: sync again.
		if (r.groups[op.group] > 0) != op.join {
			r.groupPending[op.group] = struct{}{}
		}
	}
}

// groupLoop makes the pending membership changes in batches until there
// are none (or the responder is closed).
func (r *Responder) groupLoop() {
	for {
		r.mu.Lock()
		if len(r.groupPending) == 0 || r.closed.Load() {
			r.groupWorker = false
			r.mu.Unlock()
			return
		}
		ops := r.takeGroupOpsLocked(groupBatch)
		r.mu.Unlock()
		r.applyGroupOps(ops)
		r.mu.Lock()
		r.finishGroupOpsLocked(ops)
		r.mu.Unlock()
	}
}

// applyGroupOps makes the syscalls. It runs with r.mu held (inline) or not
// (worker), never in two goroutines at once.
func (r *Responder) applyGroupOps(ops []groupOp) {
	if r.ndpConn == nil {
		return
	}
	for _, op := range ops {
		if r.closed.Load() {
			return // the sockets are gone, and their memberships with them
		}
		mac := multicastMAC(op.group)
		if op.join {
			if err := r.ndpConn.JoinGroup(mac); err != nil {
				r.log.Warn("cannot join solicited-node multicast MAC", "group", op.group.String(), "mac", mac.String(), "err", err)
			}
			if r.mld != nil {
				if err := r.mld.join(op.group); err != nil {
					// Expected when the interface has IPv6 disabled;
					// without it a snooping switch may not forward
					// solicitations to us.
					r.log.Debug("cannot send MLD join", "group", op.group.String(), "err", err)
				}
			}
			continue
		}
		if err := r.ndpConn.LeaveGroup(mac); err != nil {
			r.log.Debug("cannot leave solicited-node multicast MAC", "group", op.group.String(), "err", err)
		}
		if r.mld != nil {
			if err := r.mld.leave(op.group); err != nil {
				r.log.Debug("cannot send MLD leave", "group", op.group.String(), "err", err)
			}
		}
	}
}

// groupsSynced reports whether every wanted membership is made and every
// unwanted one left (tests and benchmarks).
func (r *Responder) groupsSynced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.groupPending) == 0 && !r.groupWorker
}
