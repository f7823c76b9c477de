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

// Partitions is how many partitions events are spread over: an event about
// subject S (an order id) is published on events.<type>.<PartitionOf(S)>,
// so every event about one order is in one partition. With partitioned
// consumers (Config.Partitioned) one instance at a time handles a
// partition, so two instances never handle one order's events at once,
// and the partitions spread over the instances.
const Partitions = 16

// PartitionOf is the partition of events about subject (FNV-1a).
func PartitionOf(subject string) int {
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h = (h ^ uint32(subject[i])) * 16777619
	}
	return int(h % Partitions)
}

// TypeSubjects are the NATS subjects of the given event types: of one
// partition, or of every partition when partition is negative (with the
// unpartitioned events.<type> that earlier versions published, so a
// consumer still sees events stored before an upgrade).
func TypeSubjects(types []string, partition int) []string {
	var out []string
	for _, t := range types {
		if partition >= 0 {
			out = append(out, SubjectPrefix+t+"."+strconv.Itoa(partition))
			continue
		}
		out = append(out, SubjectPrefix+t, SubjectPrefix+t+".*")
	}
	return out
}

// Lease timing: an owner renews each lease every LeaseRenew; a lease not
// renewed for LeaseTTL (a crashed instance) lapses and another instance
// takes the partition.
const (
	LeaseTTL   = 6 * time.Second
	LeaseRenew = time.Second
	leaseKV    = "ordermesh_leases"
)

// partitionName is the durable consumer of one partition.
func partitionName(consumer string, p int) string { return fmt.Sprintf("%s-p%02d", consumer, p) }

// balancer keeps a partitioned consumer's share of the partitions: it
// announces the instance as a member, counts the live members, and holds a
// lease (a key in a JetStream key-value bucket, renewed every LeaseRenew,
// gone LeaseTTL after its last renewal) on each partition it consumes. It
// takes free partitions while it has fewer than its share and gives back
// the extra ones, each only after its messages in hand are settled.
type balancer struct {
	c        *Consumer
	kv       jetstream.KeyValue
	instance string

	mu    sync.Mutex
	owned map[int]*lease
}

// lease is one partition this instance consumes.
type lease struct {
	rev       uint64
	renewed   time.Time // last successful renewal (or the take)
	sub       jetstream.ConsumeContext
	releasing bool // being given back: still renewed until it is
}

func (bl *balancer) memberKey() string { return "m." + bl.c.cfg.Name + "." + bl.instance }
func (bl *balancer) leaseKey(p int) string {
	return "l." + bl.c.cfg.Name + "." + strconv.Itoa(p)
}

// run balances until ctx ends, then releases every lease.
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

// round renews the leases and the membership, then takes or gives back
// partitions toward this instance's share. Nothing in it waits long: a
// partition is given back in a goroutine of its own, so the renewals of
// the others never fall behind.
func (bl *balancer) round(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, LeaseRenew)
	defer cancel()
	bl.renew(ctx)
	if _, err := bl.kv.Put(ctx, bl.memberKey(), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("announce member: %w", err)
	}
	members, err := bl.count(ctx, "m."+bl.c.cfg.Name+".")
	if err != nil {
		return err
	}
	share := (Partitions + members - 1) / max(members, 1)
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
			if bl.take(ctx, p) {
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

func (bl *balancer) owns(p int) bool {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	_, ok := bl.owned[p]
	return ok
}

// count counts the live keys under prefix.
func (bl *balancer) count(ctx context.Context, prefix string) (int, error) {
	keys, err := bl.kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return 0, fmt.Errorf("list %s*: %w", prefix, err)
	}
	defer keys.Stop()
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}

// take leases partition p if it is free and starts consuming it.
func (bl *balancer) take(ctx context.Context, p int) bool {
	rev, err := bl.kv.Create(ctx, bl.leaseKey(p), []byte(bl.instance))
	if err != nil {
		return false // held by another instance (or the bucket is unreachable)
	}
	cons, err := bl.c.bus.js.Consumer(ctx, StreamEvents, partitionName(bl.c.cfg.Name, p))
	if err == nil {
		var sub jetstream.ConsumeContext
		if sub, err = bl.c.consumeFrom(cons, StreamEvents); err == nil {
			bl.mu.Lock()
			bl.owned[p] = &lease{rev: rev, renewed: time.Now(), sub: sub}
			bl.mu.Unlock()
			bl.c.log.Debug("partition taken", "partition", p)
			return true
		}
	}
	bl.c.log.Warn("consume partition", "partition", p, "err", err)
	_ = bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(rev))
	return false
}

// renew renews every lease. A lease that another instance holds now (the
// revision moved: it lapsed and was taken), or that could not be renewed
// for most of LeaseTTL (a broker that does not answer: it may lapse any
// moment), stops being consumed at once. Other failures are tried again
// next round.
func (bl *balancer) renew(ctx context.Context) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	for p, l := range bl.owned {
		rev, err := bl.kv.Update(ctx, bl.leaseKey(p), []byte(bl.instance), l.rev)
		if err == nil {
			l.rev, l.renewed = rev, time.Now()
			continue
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			// The revision moved. If the lease is still ours, an earlier
			// renewal went through but its answer was lost: go on from it.
			if e, gerr := bl.kv.Get(ctx, bl.leaseKey(p)); gerr == nil && string(e.Value()) == bl.instance {
				l.rev, l.renewed = e.Revision(), time.Now()
				continue
			}
		}
		lost := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
		if !lost && time.Since(l.renewed) < LeaseTTL-2*LeaseRenew {
			continue // could not ask; the next round tries again
		}
		bl.c.log.Warn("partition lease lost; stopping it", "partition", p, "err", err)
		l.sub.Stop()
		delete(bl.owned, p)
	}
}

// release stops consuming partition p, waits until every message of it in
// hand is settled (so the next owner cannot handle a later event of an
// order first), then gives the lease back. The lease is renewed meanwhile.
func (bl *balancer) release(p int) {
	bl.mu.Lock()
	l, ok := bl.owned[p]
	bl.mu.Unlock()
	if !ok {
		return
	}
	l.sub.Drain()
	<-l.sub.Closed()
	prefix := SubjectPrefix
	suffix := "." + strconv.Itoa(p)
	for deadline := time.Now().Add(bl.c.cfg.HandlerTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !bl.c.held.any(func(subject string) bool {
			return strings.HasPrefix(subject, prefix) && strings.HasSuffix(subject, suffix)
		}) {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.owned[p] != l {
		return // lost meanwhile (renew) or given back at stop
	}
	delete(bl.owned, p)
	if err := bl.kv.Delete(ctx, bl.leaseKey(p), jetstream.LastRevision(l.rev)); err != nil {
		bl.c.log.Warn("give back partition lease", "partition", p, "err", err)
	}
	bl.c.log.Debug("partition released", "partition", p)
}

// stop stops consuming every partition, waits for the messages in hand
// (Consumer.Stop does), and gives back the leases and the membership.
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
	_ = bl.kv.Delete(ctx, bl.memberKey())
}

// leases opens (creating if needed) the bucket of partition leases.
func (b *Bus) leases(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, leaseKV)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	// As many replicas as EVENTS, whatever this instance was told.
	replicas := max(b.cfg.Replicas, 1)
	if st, err := b.js.Stream(ctx, StreamEvents); err == nil {
		replicas = max(replicas, st.CachedInfo().Config.Replicas)
	}
	kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      leaseKV,
		Description: "ordermesh partition leases and consumer members",
		TTL:         LeaseTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return b.js.KeyValue(ctx, leaseKV)
	}
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return kv, nil
}
