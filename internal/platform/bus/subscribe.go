package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A consumer's subscriptions: the durable consumers it reads on the
// broker, created (again, when the broker lost or deleted one) and
// consumed.

// source is a durable consumer a Consumer reads from.
type source struct {
	stream, name string
	filters      []string
	partition    int // the partition it carries; -1 when it is not one
}

// sources are cfg's durable consumers: its replays, and the events, in one
// consumer or one per partition. A subscription's index in Consumer.subs
// is its source's here.
func (b *Bus) sources(cfg ConsumerConfig) []source {
	sources := []source{{StreamReplay, cfg.Name, []string{replayPrefix + cfg.Name + ".>"}, -1}}
	if !cfg.partitioned(b.cfg.Partitioned) {
		return append(sources, source{StreamEvents, cfg.Name, TypeSubjects(cfg.Types, -1), -1})
	}
	for p := range Partitions {
		sources = append(sources, source{StreamEvents, partitionName(cfg.Name, p), TypeSubjects(cfg.Types, p), p})
	}
	return sources
}

// sources are c's durable consumers, with the event types it has now.
func (c *Consumer) sources() []source {
	c.typesMu.Lock()
	cfg := c.cfg
	c.typesMu.Unlock()
	return c.bus.sources(cfg)
}

// durable is the broker's configuration of src.
func (c *Consumer) durable(src source) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:        src.name,
		Description:    "ordermesh consumer " + c.cfg.Name,
		FilterSubjects: src.filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		// The consumer dead-letters by itself, on the delivery that
		// reaches its MaxDeliver; the broker stops a little later, for a
		// message the consumer cannot settle at all, and says so
		// (watchMaxDeliveries).
		MaxDeliver:    c.cfg.MaxDeliver + brokerMaxDeliverMargin,
		MaxAckPending: 4096,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MemoryStorage: c.bus.cfg.ConsumerMemory,
	}
	if src.stream == StreamEvents {
		cfg.Replicas = c.bus.cfg.ConsumerReplicas
	}
	if src.partition >= 0 {
		cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL = jetstream.PriorityPolicyPinned, []string{pinGroup}, PinnedTTL
	}
	return cfg
}

// ensureConsumer creates or updates a durable consumer, retrying while the
// broker cannot answer (a cluster electing leaders after a node died) for
// up to two minutes, each attempt with a deadline of its own.
func (b *Bus) ensureConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (cons jetstream.Consumer, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = b.retry(ctx, "consumer not ready; retrying", func(ctx context.Context) (err error) {
		cons, err = b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	}, "consumer", cfg.Durable, "stream", stream)
	return cons, err
}

// consumeFrom starts feeding cons's messages, of subscription i, to the
// workers; a partition's, as one of the instances its priority group may
// pin. When the subscription ends by itself (the broker deleted the
// durable consumer: 409 Consumer Deleted ends it for good), it is made
// again, unless Stop has begun, the connection is closed or the partition
// is being given back.
func (c *Consumer) consumeFrom(cons jetstream.Consumer, i int, src source) (jetstream.ConsumeContext, error) {
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(512),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Warn("consume", "stream", src.stream, "err", err)
		}),
	}
	handle := c.dispatch
	if p := src.partition; p >= 0 {
		opts = append(opts, jetstream.PullPriorityGroup(pinGroup), jetstream.PullExpiry(pullExpiry))
		handle = func(m jetstream.Msg) {
			c.balance.seen(p, m)
			c.dispatch(m)
		}
	}
	sub, err := cons.Consume(handle, opts...)
	if err != nil {
		return nil, err
	}
	go func() {
		<-sub.Closed()
		c.subsMu.Lock()
		stopping := c.stopping
		c.subsMu.Unlock()
		if !stopping && !c.bus.nc.IsClosed() && (src.partition < 0 || !c.balance.isMoving(src.partition)) {
			c.log.Warn("subscription ended by the broker (durable consumer deleted?); creating it again", "durable", src.name, "stream", src.stream)
			c.resubscribe(i, src)
		}
	}()
	return sub, nil
}

// resubscribe makes subscription i on src again: it creates the durable
// again if the broker deleted it (a new one starts from the stream's first
// event; the inbox skips what was handled) and consumes it, retrying until
// it can or the consumer stops.
func (c *Consumer) resubscribe(i int, src source) {
	for c.ctx.Err() == nil && !c.bus.nc.IsClosed() {
		var sub jetstream.ConsumeContext
		cons, err := c.bus.ensureConsumer(c.ctx, src.stream, c.durable(src))
		if err == nil {
			sub, err = c.consumeFrom(cons, i, src)
		}
		if err == nil {
			c.subsMu.Lock()
			c.subs[i] = sub
			stopping := c.stopping
			c.subsMu.Unlock()
			if stopping { // Stop did not see it
				sub.Stop()
			}
			return
		}
		c.log.Warn("subscribe again", "durable", src.name, "err", err)
		select {
		case <-c.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// partitionSub is the subscription of partition p, and its index.
func (c *Consumer) partitionSub(p int) (int, jetstream.ConsumeContext) {
	i := 1 + p // after the replays' (see sources)
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	return i, c.subs[i]
}
