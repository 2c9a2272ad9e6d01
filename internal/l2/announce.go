package l2

import (
	"container/heap"
	"context"
	"net/netip"
	"time"
)

// The announcement schedule: every owned address has one entry, ordered by
// when its next announcement is due (a heap, so that thousands of addresses
// cost O(log n) per announcement, not a scan of all of them), and a token
// bucket bounds the frames per second.
//
// Due times order the backlog: after a fail-over of thousands of addresses
// every first announcement is due at once and all of them go out, at the
// bounded rate, before any second announcement (due GratuitousInterval
// after its first was sent) or refresh.

// announcement is the schedule of gratuitous frames for one owned address.
type announcement struct {
	addr netip.Addr
	sent int
	next time.Time
	seq  uint64 // order among equal due times: first scheduled, first sent
	// index is the position in the queue, -1 while it is being sent.
	index int
	// restarted: a new burst was scheduled while it was being sent.
	restarted bool
	// fresh: the address was newly owned and its first announcement has
	// not gone out yet (Options.OnFirstAnnouncement).
	fresh bool
}

type announceQueue []*announcement

func (q announceQueue) Len() int { return len(q) }
func (q announceQueue) Less(i, j int) bool {
	if !q[i].next.Equal(q[j].next) {
		return q[i].next.Before(q[j].next)
	}
	return q[i].seq < q[j].seq
}
func (q announceQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *announceQueue) Push(x any) {
	a := x.(*announcement)
	a.index = len(*q)
	*q = append(*q, a)
}
func (q *announceQueue) Pop() any {
	old := *q
	a := old[len(old)-1]
	a.index = -1
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return a
}

// framesPerAnnouncement is the cost of one announcement in frames: a
// gratuitous ARP goes out in request and reply form.
func framesPerAnnouncement(a netip.Addr) float64 {
	if a.Is4() {
		return 2
	}
	return 1
}

// tokenBucket bounds the announcement frames per second. It is used by the
// announce loop only.
type tokenBucket struct {
	rate, burst, tokens float64 // rate <= 0: unlimited
	last                time.Time
}

func newTokenBucket(rate int, now time.Time) *tokenBucket {
	if rate <= 0 {
		return &tokenBucket{}
	}
	burst := max(float64(rate)/20, 2)
	return &tokenBucket{rate: float64(rate), burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) refill(now time.Time) {
	if b.rate <= 0 {
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
}

// take spends cost tokens if there are enough.
func (b *tokenBucket) take(cost float64) bool {
	if b.rate <= 0 {
		return true
	}
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// wait is how long until cost tokens are there.
func (b *tokenBucket) wait(cost float64) time.Duration {
	if b.rate <= 0 || b.tokens >= cost {
		return 0
	}
	return time.Duration((cost - b.tokens) / b.rate * float64(time.Second))
}

// announceBatch is the most announcements sent per pass of the loop, so the
// lock is not held long and new due times are seen.
const announceBatch = 64

// scheduleLocked (re)starts the burst of addr at the given time. r.mu held.
func (r *Responder) scheduleLocked(addr netip.Addr, at time.Time) {
	r.seq++
	if a, ok := r.sched[addr]; ok {
		a.sent, a.next, a.seq = 0, at, r.seq
		if a.index >= 0 {
			heap.Fix(&r.queue, a.index)
		} else {
			a.restarted = true // advance queues it again
		}
		return
	}
	a := &announcement{addr: addr, next: at, seq: r.seq, index: -1}
	r.sched[addr] = a
	heap.Push(&r.queue, a)
}

// unscheduleLocked forgets addr's announcements. r.mu held.
func (r *Responder) unscheduleLocked(addr netip.Addr) {
	a, ok := r.sched[addr]
	if !ok {
		return
	}
	delete(r.sched, addr)
	if a.index >= 0 {
		heap.Remove(&r.queue, a.index)
	}
}

func (r *Responder) wakeAnnouncer() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// announceLoop sends the scheduled gratuitous frames until ctx is done, at
// most GratuitousRate frames per second.
func (r *Responder) announceLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	bucket := newTokenBucket(r.opts.GratuitousRate, time.Now())
	for {
		batch := r.dueAnnouncements(time.Now(), bucket)
		for _, a := range batch {
			sent := r.announce(a.addr)
			now := time.Now()
			if r.advance(a, now, sent) && r.opts.OnFirstAnnouncement != nil {
				r.opts.OnFirstAnnouncement(a.addr, now)
			}
		}
		if len(batch) == announceBatch {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		t.Reset(r.nextAnnouncement(time.Now(), bucket))
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// dueAnnouncements takes the announcements that are due and that the token
// bucket allows, at most announceBatch, out of the queue.
func (r *Responder) dueAnnouncements(now time.Time, bucket *tokenBucket) []*announcement {
	r.mu.Lock()
	defer r.mu.Unlock()
	bucket.refill(now)
	var due []*announcement
	for len(r.queue) > 0 && len(due) < announceBatch {
		a := r.queue[0]
		if a.next.After(now) || !bucket.take(framesPerAnnouncement(a.addr)) {
			break
		}
		heap.Pop(&r.queue)
		due = append(due, a)
	}
	return due
}

// refreshPeriodLocked is how long an address waits for its next refresh:
// RefreshInterval, stretched so that all owned addresses together refresh
// at most RefreshRate per second — a node owning thousands of addresses
// does not broadcast a hundred refreshes a second to re-teach clients that
// rarely need it. r.mu must be held.
func (r *Responder) refreshPeriodLocked() time.Duration {
	period := r.opts.RefreshInterval
	if r.opts.RefreshRate > 0 {
		if spread := time.Duration(len(r.sched)) * time.Second / time.Duration(r.opts.RefreshRate); spread > period {
			period = spread
		}
	}
	return period
}

// advance moves an address's schedule past an announcement. One that could
// not go out because the link is down is retried at the burst interval
// without counting, so the whole burst is sent once the link is back. It
// reports whether this was the first announcement of a newly owned
// address.
func (r *Responder) advance(a *announcement, now time.Time, sent bool) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sched[a.addr] != a {
		return false // removed meanwhile
	}
	if sent && a.fresh {
		a.fresh, first = false, true
	}
	switch {
	case a.restarted:
		// A new burst was scheduled while this frame went out.
		a.restarted = false
	case !sent:
		a.next = now.Add(r.opts.GratuitousInterval)
	case a.sent+1 < r.opts.GratuitousCount:
		a.sent++
		a.next = now.Add(r.opts.GratuitousInterval)
	case r.opts.RefreshInterval > 0:
		a.sent++
		a.next = now.Add(r.refreshPeriodLocked())
	default:
		delete(r.sched, a.addr)
		return first
	}
	r.seq++
	a.seq = r.seq
	heap.Push(&r.queue, a)
	return first
}

// nextAnnouncement is how long to sleep until the next announcement is due
// and the bucket has the tokens for it.
func (r *Responder) nextAnnouncement(now time.Time, bucket *tokenBucket) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return time.Hour
	}
	a := r.queue[0]
	bucket.refill(now)
	return max(a.next.Sub(now), bucket.wait(framesPerAnnouncement(a.addr)), 0)
}

// restartBursts schedules a fresh gratuitous burst for every owned address:
// after the link was down, clients may have moved elsewhere or expired
// their entries, so the node announces again as if it had just taken over.
func (r *Responder) restartBursts() {
	if r.opts.GratuitousCount <= 0 {
		return
	}
	r.mu.Lock()
	now := time.Now()
	for _, a := range r.owned.Load().sorted {
		r.scheduleLocked(a, now)
	}
	r.mu.Unlock()
	r.wakeAnnouncer()
}
