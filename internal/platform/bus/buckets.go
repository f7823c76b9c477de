package bus

import (
	"context"
	"errors"
	"fmt"
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
