package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A consumer's subscriptions: the durable consumers it reads on the
// broker, created (again, when the broker lost or deleted one) and
// consumed.

// durable is the broker's configuration of src.
func (c *Consumer) durable(src source) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
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
}

// source returns the durable consumer called name on stream, with the
// event types the consumer has now.
func (c *Consumer) source(stream, name string) (source, bool) {
	c.typesMu.Lock()
	cfg := c.cfg
	c.typesMu.Unlock()
	for _, src := range c.bus.sources(cfg) {
		if src.stream == stream && src.name == name {
			return src, true
		}
	}
	return source{}, false
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

// consumeFrom starts feeding cons's messages to the workers. When the
// subscription ends by itself (the broker deleted the durable consumer:
// 409 Consumer Deleted ends it for good), lost is called, unless Stop has
// begun or the connection is closed.
func (c *Consumer) consumeFrom(cons jetstream.Consumer, stream string, lost func()) (jetstream.ConsumeContext, error) {
	sub, err := cons.Consume(c.dispatch,
		jetstream.PullMaxMessages(512),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Warn("consume", "stream", stream, "err", err)
		}))
	if err != nil {
		return nil, err
	}
	go func() {
		<-sub.Closed()
		c.subsMu.Lock()
		stopping := c.stopping
		c.subsMu.Unlock()
		if !stopping && !c.bus.nc.IsClosed() {
			lost()
		}
	}()
	return sub, nil
}

// resubscribe replaces subscription i, on the durable consumer called
// name on stream, which ended by itself: it creates the durable again if
// the broker deleted it (a new one starts from the stream's first event;
// the inbox skips what was handled) and consumes it, retrying until it
// can or the consumer stops.
func (c *Consumer) resubscribe(i int, stream, name string) {
	src, _ := c.source(stream, name)
	c.log.Warn("subscription ended by the broker (durable consumer deleted?); creating it again", "durable", name, "stream", src.stream)
	for c.ctx.Err() == nil && !c.bus.nc.IsClosed() {
		var sub jetstream.ConsumeContext
		cons, err := c.bus.ensureConsumer(c.ctx, src.stream, c.durable(src))
		if err == nil {
			sub, err = c.consumeFrom(cons, src.stream, func() { c.resubscribe(i, stream, name) })
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
		c.log.Warn("subscribe again", "durable", name, "err", err)
		select {
		case <-c.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
