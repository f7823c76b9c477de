package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// brokerMaxDeliverMargin is how many deliveries past ConsumerConfig's
// MaxDeliver the broker itself allows: the consumer dead-letters an event
// on its MaxDeliver-th failure (or, after a crash, on the delivery past
// it), so the broker's limit is reached only when the consumer cannot
// settle a message at all (a handler that kills the process every time).
const brokerMaxDeliverMargin = 2

// maxDeliveriesAdvisory is the subject of the broker's advisory that a
// consumer's message reached its MaxDeliver (stream and durable follow).
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."

// watchMaxDeliveries listens for the broker's word that one of c's durable
// consumers gave up on a message after its MaxDeliver, and puts that
// message in the DLQ with the reason, so even an event no instance of c
// could settle ends where an operator sees it (each instance receives the
// advisory; the DLQ keeps one copy by Nats-Msg-Id). It returns the
// subscription to end with c.
func (c *Consumer) watchMaxDeliveries() (*nats.Subscription, error) {
	durables := map[string]bool{}
	for _, src := range c.bus.sources(c.cfg) {
		durables[src.stream+"."+src.name] = true
	}
	return c.bus.nc.Subscribe(maxDeliveriesAdvisory+"*.*", func(m *nats.Msg) {
		var adv struct {
			Stream     string `json:"stream"`
			Consumer   string `json:"consumer"`
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil || !durables[adv.Stream+"."+adv.Consumer] {
			return
		}
		c.log.Error("the broker stopped redelivering an event after its MaxDeliver; dead-lettering it",
			"stream", adv.Stream, "durable", adv.Consumer, "seq", adv.StreamSeq, "deliveries", adv.Deliveries)
		if c.bus.metrics != nil {
			c.bus.metrics.brokerMaxDeliveries.WithLabelValues(c.cfg.Name).Inc()
		}
		go c.deadLetterStored(adv.Stream, adv.StreamSeq, adv.Deliveries)
	})
}

// deadLetterStored copies message seq of stream to the DLQ as c's dead
// letter: the broker gave up delivering it to c.
func (c *Consumer) deadLetterStored(stream string, seq, deliveries uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.bus.js.Stream(ctx, stream)
	if err == nil {
		var raw *jetstream.RawStreamMsg
		if raw, err = st.GetMsg(ctx, seq); err == nil {
			cause := fmt.Errorf("the broker stopped after %d deliveries (its MaxDeliver): no instance of %s settled it", deliveries, c.cfg.Name)
			_, err = c.bus.js.PublishMsg(ctx, c.deadLetterMsg(raw.Header, raw.Data, raw.Subject, stream, seq, deliveries, cause))
		}
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		c.log.Error("dead-lettering an event the broker gave up on failed; it stays in the stream", "stream", stream, "seq", seq, "err", err)
	}
}
