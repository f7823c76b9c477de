package bus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// delivery is a received message on its way through process.
type delivery struct {
	msg  jetstream.Msg
	md   *jetstream.MsgMetadata
	ev   Event
	span trace.Span // this handling, a child of the emission's span
}

// process decodes a batch, dead-letters what cannot be handled, runs the
// handler on the rest and settles each message by its outcome.
func (c *Consumer) process(msgs []jetstream.Msg) {
	ds := make([]delivery, 0, len(msgs))
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			c.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			c.held.remove(msg)
			continue
		}
		ev, err := c.bus.cfg.Admit(msg.Headers(), msg.Data())
		if err != nil {
			c.deadLetter(msg, md, err)
			continue
		}
		if int(md.NumDelivered) > c.cfg.MaxDeliver {
			c.deadLetter(msg, md, fmt.Errorf("no acknowledgement after %d deliveries (handler crashed or exceeded %s)", md.NumDelivered-1, c.cfg.HandlerTimeout))
			continue
		}
		ds = append(ds, c.startHandling(msg, md, ev))
	}
	if len(ds) == 0 {
		return
	}
	evs := make([]Event, len(ds))
	for i, d := range ds {
		evs[i] = d.ev
	}
	start := time.Now()
	errs := c.call(evs)
	c.observe(ds, time.Since(start))
	for i, d := range ds {
		var err error
		if errs != nil {
			err = errs[i]
		}
		c.settle(d, err)
	}
}

func (c *Consumer) startHandling(msg jetstream.Msg, md *jetstream.MsgMetadata, ev Event) delivery {
	ev, span := StartHandling(c.ctx, c.cfg.Name, ev)
	return delivery{msg: msg, md: md, ev: ev, span: span}
}

// StartHandling starts the span of consumer's handling of ev, a child of
// its emission's, on either engine. The event returned carries the
// handling's traceparent, so that the events the handler emits because of
// it become its children.
func StartHandling(ctx context.Context, consumer string, ev Event) (Event, trace.Span) {
	ctx, span := telemetry.StartEvent(ctx, "handle "+ev.Type, trace.SpanKindConsumer, ev.TraceParent,
		telemetry.AttrConsumer.String(consumer), telemetry.AttrEventID.String(ev.ID),
		telemetry.AttrEventType.String(ev.Type), telemetry.AttrOrderID.String(ev.Subject))
	if tp := telemetry.TraceParent(ctx); tp != "" {
		ev.TraceParent = tp
	}
	return ev, span
}

// LogAttrs are the log attributes of every line about an event: its id and
// type, its order (subject) and its trace.
func LogAttrs(ev Event) []any {
	return []any{"event", ev.ID, "type", ev.Type, "order_id", ev.Subject, "trace_id", telemetry.TraceID(telemetry.WithTraceParent(context.Background(), ev.TraceParent))}
}

// headerLogAttrs are LogAttrs read from a message's headers, for a message
// that could not be decoded (its headers are as received).
func headerLogAttrs(h nats.Header) []any {
	return LogAttrs(Event{ID: h.Get(HeaderID), Type: h.Get(HeaderType), Subject: h.Get(HeaderSubject), TraceParent: extension(h, HeaderTraceParent)})
}

// observe records a handled batch's time for each of its events' types,
// and the redeliveries among them.
func (c *Consumer) observe(ds []delivery, took time.Duration) {
	m := c.bus.metrics
	if m == nil {
		return
	}
	for _, d := range ds { // types here passed the schema check: catalog types only
		m.handle.WithLabelValues(c.cfg.Name, d.ev.Type).Observe(took.Seconds())
		if d.md.NumDelivered > 1 {
			m.redelivered.WithLabelValues(c.cfg.Name).Inc()
		}
	}
}

// count records an event's outcome. A type the consumer does not
// subscribe to (a forged header) counts as "other", so that hostile input
// cannot grow the metric without bound.
func (c *Consumer) count(typ, outcome string) {
	m := c.bus.metrics
	if m == nil {
		return
	}
	c.typesMu.Lock()
	known := slices.Contains(c.cfg.Types, typ)
	c.typesMu.Unlock()
	if !known {
		typ = "other"
	}
	m.events.WithLabelValues(c.cfg.Name, typ, outcome).Inc()
}

// verdict is what a handled delivery's outcome means for its message.
type verdict struct {
	act   settlement
	delay time.Duration // a retry's
	cause error         // a dead letter's
}

type settlement int

const (
	ack        settlement = iota // handled: done with it
	retry                        // a transient failure: deliver it again after delay
	deadLetter                   // it cannot succeed: to the DLQ with cause
)

// outcome decides, from the handler's error, the deliveries so far, the
// limit and the backoff, what becomes of a message. Pure: TestOutcome
// checks every case.
func outcome(err error, delivered, maxDeliver int, backoff func(delivery int) time.Duration) verdict {
	switch {
	case err == nil:
		return verdict{act: ack}
	case IsPermanent(err):
		return verdict{act: deadLetter, cause: err}
	case delivered >= maxDeliver:
		return verdict{act: deadLetter, cause: fmt.Errorf("failed %d deliveries, last error: %w", delivered, err)}
	}
	return verdict{act: retry, delay: backoff(delivered)}
}

// settle acks, retries or dead-letters one message by its handler
// outcome.
func (c *Consumer) settle(d delivery, err error) {
	defer c.held.remove(d.msg)
	if err != nil {
		d.span.RecordError(err)
		d.span.SetStatus(codes.Error, err.Error())
	}
	defer d.span.End()
	v := outcome(err, int(d.md.NumDelivered), c.cfg.MaxDeliver, c.cfg.Backoff)
	switch v.act {
	case ack:
		c.count(d.ev.Type, "ok")
		if err := d.msg.Ack(); err != nil {
			c.log.Warn("ack", append(LogAttrs(d.ev), "err", err)...)
		}
	case deadLetter:
		c.deadLetter(d.msg, d.md, v.cause)
	case retry:
		c.count(d.ev.Type, "retry")
		c.log.Debug("transient failure; will retry", append(LogAttrs(d.ev), "delivery", d.md.NumDelivered, "retry_in", v.delay, "err", err)...)
		if err := d.msg.NakWithDelay(v.delay); err != nil {
			c.log.Warn("nak", append(LogAttrs(d.ev), "err", err)...)
		}
	}
}

// call runs the handler with the ack deadline, turning a panic into a
// transient error for every event of the batch, so one bad handler path
// cannot kill the consumer.
func (c *Consumer) call(evs []Event) (errs []error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			errs = make([]error, len(evs))
			for i := range errs {
				errs[i] = fmt.Errorf("handler panic: %v", r)
			}
		}
	}()
	errs = c.handle(ctx, evs)
	if errs != nil && len(errs) != len(evs) {
		panic(fmt.Sprintf("bus: batch handler of %s returned %d results for %d events", c.cfg.Name, len(errs), len(evs)))
	}
	return errs
}
