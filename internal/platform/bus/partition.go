package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease timing: every instance renews its membership every LeaseRenew; a
// membership not renewed for LeaseTTL (a crashed instance) lapses, and
// the partitions its instance held may then be taken by the others.
const (
	LeaseTTL   = 6 * time.Second
	LeaseRenew = time.Second
	// The leases' bucket keeps its keys until they are deleted or taken
	// over; the members' bucket forgets a key LeaseTTL after its last write.
	leaseKV  = "ordermesh_partitions"
	memberKV = "ordermesh_members"
)

// partitionName is the durable consumer of one partition.
func partitionName(consumer string, p int) string { return fmt.Sprintf("%s-p%02d", consumer, p) }

// balancer keeps a partitioned consumer's share of the partitions, with
// the help of a JetStream key-value bucket whose keys lapse LeaseTTL after
// their last write:
//
//   - m.<consumer>.<instance> (ordermesh_members, whose keys lapse LeaseTTL
//     after their last write): the instance is alive; it writes it every
//     LeaseRenew. That one write per second is all an instance does while
//     nothing changes.
//   - l.<consumer>.<partition> (ordermesh_partitions, kept until deleted):
//     the instance that holds the partition. It
//     is taken with a compare-and-set (create, or update at the revision
//     read) when free or when its holder's membership has lapsed, and
//     deleted when given back.
//
// An instance whose membership write has not succeeded for LeaseTTL -
// 2*LeaseRenew stops consuming every partition it holds (it fences itself)
// before its membership can lapse and another instance take them; it
// checks before each write too, for a process waking from a pause. It takes
// partitions while it has fewer than its share and gives back the extra
// ones, each only after its messages in hand are settled.
type balancer struct {
	c        *Consumer
	kv       jetstream.KeyValue // leases: kept until deleted
	members  jetstream.KeyValue // memberships: gone LeaseTTL after their last write
	instance string

	mu    sync.Mutex
	owned map[int]*lease
	alive time.Time // the last successful membership write
	// leftovers: leases naming this instance that it does not consume may
	// be left in the bucket (it fenced itself, or a give-back's deletion
	// failed). Left there, no live instance would ever consume them.
	leftovers bool
}

// lease is one partition this instance consumes.
type lease struct {
	rev       uint64
	sub       jetstream.ConsumeContext
	releasing bool // being given back
}

func (bl *balancer) memberPrefix() string { return "m." + bl.c.cfg.Name + "." }
func (bl *balancer) memberKey() string    { return bl.memberPrefix() + bl.instance }
func (bl *balancer) leaseKey(p int) string {
	return "l." + bl.c.cfg.Name + "." + strconv.Itoa(p)
}

// run balances until ctx ends.
func (bl *balancer) run(ctx context.Context) {
	tick := time.NewTicker(LeaseRenew)
	defer tick.Stop()
	for {
		if err := bl.round(ctx); err != nil && ctx.Err() == nil {
			bl.c.log.Warn("partition balance", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// round renews the membership (or fences this instance when it cannot),
// then takes or gives back partitions toward this instance's share.
// Nothing in it waits long: a partition is given back in a goroutine of
// its own.
func (bl *balancer) round(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, LeaseRenew)
	defer cancel()
	if err := bl.renew(ctx); err != nil {
		return err
	}
	members, err := bl.liveMembers(ctx)
	if err != nil {
		return err
	}
	share := (Partitions + len(members) - 1) / max(len(members), 1)
	bl.mu.Lock()
	have := 0
	for _, l := range bl.owned {
		if !l.releasing {
			have++
		}
	}
	bl.mu.Unlock()
	switch {
	case have < share:
		// Start at a different partition on each instance, so that
		// instances starting together do not all race for partition 0.
		start := PartitionOf(bl.instance)
		for i := 0; i < Partitions && have < share; i++ {
			p := (start + i) % Partitions
			if bl.owns(p) {
				continue
			}
			if bl.take(ctx, p, members) {
				have++
			}
		}
	case have > share:
		bl.mu.Lock()
		kept := slices.Sorted(func(yield func(int) bool) {
			for p, l := range bl.owned {
				if !l.releasing && !yield(p) {
					return
				}
			}
		})
		for _, p := range kept[share:] {
			bl.owned[p].releasing = true
			go bl.release(p)
		}
		bl.mu.Unlock()
	}
	return nil
}

// renew writes this instance's membership, fencing it first when the
// last write is too old, and then drops the leases left over.
func (bl *balancer) renew(ctx context.Context) error {
	// Before writing: a process that was paused (SIGSTOP, a frozen VM)
	// finds its last write too old when it wakes, and its membership may
	// have lapsed and its partitions been taken meanwhile, though this
	// write will succeed (TestAnInstanceThatWakesAfterItsMembershipLapsedStopsItsPartitions).
	bl.fenceIfLapsing()
	if _, err := bl.members.Put(ctx, bl.memberKey(), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		bl.fenceIfLapsing()
		return fmt.Errorf("announce member: %w", err)
	}
	bl.mu.Lock()
	bl.alive = time.Now()
	leftovers := bl.leftovers
	bl.mu.Unlock()
	if leftovers && bl.dropLeftovers(ctx) {
		bl.mu.Lock()
		bl.leftovers = false
		bl.mu.Unlock()
	}
	return nil
}

// fenceIfLapsing stops every partition once this instance's membership may
// lapse before it can renew it: another instance may take them then.
func (bl *balancer) fenceIfLapsing() {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if len(bl.owned) == 0 || time.Since(bl.alive) < LeaseTTL-2*LeaseRenew {
		return
	}
	bl.c.log.Warn("cannot renew membership; stopping every partition before another instance may take them", "partitions", len(bl.owned))
	for p, l := range bl.owned {
		l.sub.Stop()
		delete(bl.owned, p)
	}
	bl.leftovers = true
}

// dropLeftovers gives back the leases that still name this instance but
// that it does not consume, so that their partitions do not stay orphaned
// while it lives on (TestGivingBackALeaseThatFailsLeavesNoOrphan); false
// when some could not be read or deleted, to try again next round.
func (bl *balancer) dropLeftovers(ctx context.Context) bool {
	done := true
	for p := range Partitions {
		if bl.owns(p) {
			continue
		}
		e, err := bl.kv.Get(ctx, bl.leaseKey(p))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			done = false
		case string(e.Value()) == bl.instance:
			if err := bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(e.Revision())); err != nil {
				done = false
			}
		}
	}
	return done
}

func (bl *balancer) owns(p int) bool {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	_, ok := bl.owned[p]
	return ok
}

// liveMembers returns the live instances of this consumer.
func (bl *balancer) liveMembers(ctx context.Context) (map[string]bool, error) {
	keys, err := bl.members.ListKeysFiltered(ctx, bl.memberPrefix()+"*")
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	defer keys.Stop()
	out := map[string]bool{}
	for k := range keys.Keys() {
		out[strings.TrimPrefix(k, bl.memberPrefix())] = true
	}
	return out, nil
}

// take leases partition p, when nobody holds it or its holder is no longer
// a member, and starts consuming it.
func (bl *balancer) take(ctx context.Context, p int, members map[string]bool) bool {
	var rev uint64
	e, err := bl.kv.Get(ctx, bl.leaseKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = bl.kv.Create(ctx, bl.leaseKey(p), []byte(bl.instance))
	case err != nil:
		return false
	case string(e.Value()) == bl.instance:
		// Ours already: an earlier take (or give-back) whose answer was
		// lost. Left alone, no live instance would ever consume it.
		rev = e.Revision()
	case members[string(e.Value())]:
		return false // held by a live instance
	default: // its holder's membership lapsed: take it over, unless someone was quicker
		rev, err = bl.kv.Update(ctx, bl.leaseKey(p), []byte(bl.instance), e.Revision())
	}
	if err != nil {
		// The write may have taken effect with its answer lost: the lease
		// may name this instance now.
		bl.markLeftovers()
		return false
	}
	name := partitionName(bl.c.cfg.Name, p)
	cons, err := bl.c.bus.js.Consumer(ctx, StreamEvents, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// Deleted on the broker (TestConsumerOutlivesItsDurable).
		if src, ok := bl.c.source(StreamEvents, name); ok {
			cons, err = bl.c.bus.js.CreateOrUpdateConsumer(ctx, StreamEvents, bl.c.durable(src))
		}
	}
	if err == nil {
		l := &lease{rev: rev}
		bl.mu.Lock() // held until l is in owned, before lost can look for it
		if l.sub, err = bl.c.consumeFrom(cons, StreamEvents, func() { bl.lost(p, l) }); err == nil {
			bl.owned[p] = l
			bl.mu.Unlock()
			bl.c.log.Debug("partition taken", "partition", p)
			return true
		}
		bl.mu.Unlock()
	}
	bl.c.log.Warn("consume partition", "partition", p, "err", err)
	if bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(rev)) != nil {
		bl.markLeftovers()
	}
	return false
}

func (bl *balancer) markLeftovers() {
	bl.mu.Lock()
	bl.leftovers = true
	bl.mu.Unlock()
}

// lost forgets partition p when its subscription l ended by itself (its
// durable consumer was deleted on the broker): the lease stays this
// instance's, and the next round takes the partition again, creating the
// durable anew.
func (bl *balancer) lost(p int, l *lease) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.owned[p] != l || l.releasing {
		return // fenced, given back or being given back: ended on purpose
	}
	bl.c.log.Warn("partition's subscription ended by the broker (durable consumer deleted?); taking it again", "partition", p)
	delete(bl.owned, p)
}

// release stops consuming partition p, waits until every message of it in
// hand is settled (so the next holder cannot handle a later event of an
// order first), then gives the lease back.
func (bl *balancer) release(p int) {
	bl.mu.Lock()
	l, ok := bl.owned[p]
	bl.mu.Unlock()
	if !ok {
		return
	}
	l.sub.Drain()
	select {
	case <-l.sub.Closed():
	case <-time.After(bl.c.cfg.HandlerTimeout): // a drain cut off from the broker
		l.sub.Stop()
	}
	for deadline := time.Now().Add(bl.c.cfg.HandlerTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !bl.c.held.any(func(subject string) bool {
			q, ok := partitionOfMessage(subject)
			return ok && q == p
		}) {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.owned[p] != l {
		return // fenced meanwhile, or given back at stop
	}
	delete(bl.owned, p)
	if err := bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(l.rev)); err != nil {
		bl.c.log.Warn("give back partition lease; retrying next round", "partition", p, "err", err)
		bl.leftovers = true
	}
	bl.c.log.Debug("partition released", "partition", p)
}

// subs are the subscriptions of the partitions held now.
func (bl *balancer) subs() []jetstream.ConsumeContext {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	var out []jetstream.ConsumeContext
	for _, l := range bl.owned {
		out = append(out, l.sub)
	}
	return out
}

// giveBack deletes every lease and the membership key.
func (bl *balancer) giveBack() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bl.mu.Lock()
	defer bl.mu.Unlock()
	for p, l := range bl.owned {
		_ = bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(l.rev))
		delete(bl.owned, p)
	}
	_ = bl.members.Delete(ctx, bl.memberKey())
}
