package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leases opens (creating if needed) the buckets of partition leases and
// of consumer members.
func (b *Bus) leases(ctx context.Context) (leases, members jetstream.KeyValue, err error) {
	// Like a consumer's creation, this waits out a cluster electing leaders
	// (an instance restarted beside a restarted broker node), for up to two
	// minutes.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = b.retry(ctx, "partition leases not ready; retrying", func(ctx context.Context) (err error) {
		if leases, err = b.bucket(ctx, leaseKV, 0); err != nil {
			return err
		}
		members, err = b.bucket(ctx, memberKV, LeaseTTL)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("partition lease buckets: %w", err)
	}
	return leases, members, nil
}

// bucket opens (creating if needed) a key-value bucket with as many
// replicas as EVENTS, whatever this instance was told.
func (b *Bus) bucket(ctx context.Context, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, name)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	replicas := max(b.cfg.Replicas, 1)
	if st, err := b.js.Stream(ctx, StreamEvents); err == nil {
		replicas = max(replicas, st.CachedInfo().Config.Replicas)
	}
	kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "ordermesh partitioned consumers",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return b.js.KeyValue(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return kv, nil
}

// watch stops consuming a partition the moment its lease changes under
// this instance: it names another instance (which took it over while this
// one's membership had lapsed, whatever this one believed) or it is gone
// while this instance is not giving it back
// (TestAnInstanceStopsAPartitionTakenFromIt). The rounds would find out
// only if this instance fenced itself. It watches until ctx ends.
func (bl *balancer) watch(ctx context.Context) {
	prefix := "l." + bl.c.cfg.Name + "."
	for ctx.Err() == nil && !bl.c.bus.nc.IsClosed() {
		w, err := bl.kv.Watch(ctx, prefix+"*", jetstream.UpdatesOnly())
		if err != nil {
			bl.c.log.Warn("watch partition leases", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(LeaseRenew):
			}
			continue
		}
		unwatch := context.AfterFunc(ctx, func() { w.Stop() }) // ends the updates
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			p, err := strconv.Atoi(strings.TrimPrefix(e.Key(), prefix))
			ours := e.Operation() == jetstream.KeyValuePut && string(e.Value()) == bl.instance
			if err == nil && !ours {
				bl.takenAway(p, e.Revision())
			}
		}
		unwatch()
		w.Stop()
	}
}

// takenAway stops consuming partition p, whose lease changed at revision
// rev to name another instance or nobody, unless this instance is giving
// it back or took it again since (a later revision).
func (bl *balancer) takenAway(p int, rev uint64) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	l, ok := bl.owned[p]
	if !ok || l.releasing || rev <= l.rev {
		return
	}
	bl.c.log.Warn("partition's lease taken by another instance; stopping it", "partition", p)
	l.sub.Stop()
	delete(bl.owned, p)
}
