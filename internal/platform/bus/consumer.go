package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordermesh/ordermesh/internal/platform/every"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

// Handler processes one event. Returning nil acknowledges it. An error
// wrapped with Permanent sends the event to the dead-letter stream at once;
// any other error is transient: the event is redelivered after a growing
// delay, and dead-lettered once it has been delivered MaxDeliver times.
type Handler func(ctx context.Context, ev Event) error

// BatchHandler processes several events at once, typically in one database
// transaction, and returns each one's outcome: errs[i] for evs[i] with the
// meaning of a Handler's error, or a nil slice when all succeeded.
type BatchHandler func(ctx context.Context, evs []Event) (errs []error)

// Skipping wraps h so that the events skip names are acknowledged without
// reaching h (a consumer that can tell, cheaply and without writing, that
// an event needs nothing). skip reports, for each event, whether to skip
// it; when it fails, every event goes to h.
// FailAll is a batch handler's answer when every event of the batch failed
// with err (for example, their shared transaction did not commit).
func FailAll(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func Skipping(h BatchHandler, skip func(ctx context.Context, evs []Event) ([]bool, error)) BatchHandler {
	return func(ctx context.Context, evs []Event) []error {
		skipped, err := skip(ctx, evs)
		if err != nil {
			return h(ctx, evs)
		}
		var rest []Event
		var at []int
		for i, ev := range evs {
			if !skipped[i] {
				rest = append(rest, ev)
				at = append(at, i)
			}
		}
		switch len(rest) {
		case 0:
			return nil
		case len(evs):
			return h(ctx, evs)
		}
		errs := h(ctx, rest)
		if errs == nil {
			return nil
		}
		all := make([]error, len(evs))
		for j, i := range at {
			all[i] = errs[j]
		}
		return all
	}
}

// PermanentError marks a failure that retrying cannot fix (bad data, a
// rejected contract). See Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the consumer dead-letters the event instead of
// retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// DefaultAckWait is how long an unacknowledged delivery waits before the
// broker redelivers it (see ConsumerConfig.AckWait).
const DefaultAckWait = 3 * time.Second

// DefaultMaxDeliver is how many deliveries an event gets before it is
// dead-lettered (--max-deliver).
const DefaultMaxDeliver = 8

// ConsumerConfig configures a durable consumer.
type ConsumerConfig struct {
	// Name is the durable consumer name, "<service>-<purpose>" (letters,
	// digits, '-' and '_'). Every instance of a service that uses the same
	// name shares the consumer: each event goes to one of them.
	Name string
	// Types are the event types consumed, e.g. "order.placed".
	Types []string
	// MaxDeliver is the number of deliveries before an event is
	// dead-lettered. Zero means DefaultMaxDeliver.
	MaxDeliver int
	// Concurrency is the number of events handled at once. Events about the
	// same subject (order id) go to the same worker, so they are handled in
	// order. Zero means 4.
	Concurrency int
	// MaxBatch is the most events handed to a BatchHandler at once: the
	// events a worker has already received, never waiting for more. Zero
	// means 256. Consume (one event at a time) ignores it.
	MaxBatch int
	// Linger is how long a worker that has received fewer than MaxBatch
	// events waits for more before handing them on. Zero means it never
	// waits. Consumers off the order's critical path linger, so that their
	// batches (and so their transactions) grow at moderate rates; each event
	// is then late by at most Linger.
	Linger time.Duration
	// AckWait is how long the broker waits for an acknowledgement before
	// redelivering. It is also how long events received by a crashed
	// instance wait before another gets them, so it is short: while a
	// handler is legitimately busy (a provider call with retries), the
	// consumer tells the broker it is in progress every AckWait/3. Zero
	// means 3s.
	AckWait time.Duration
	// HandlerTimeout is the handler's deadline for one batch. Zero means
	// 30s.
	HandlerTimeout time.Duration
	// Backoff returns the redelivery delay after the given delivery failed
	// transiently. Nil means exponential from 250ms, capped at 30s, ±20%.
	Backoff func(delivery int) time.Duration
}

var consumerName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *ConsumerConfig) validate() error {
	if !consumerName.MatchString(c.Name) {
		return fmt.Errorf("consumer name %q: use letters, digits, '-' and '_'", c.Name)
	}
	if len(c.Types) == 0 {
		return fmt.Errorf("consumer %s: no event types", c.Name)
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = 30 * time.Second
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(250*time.Millisecond, 30*time.Second)
	}
	return nil
}

// ExponentialBackoff doubles the delay from base for each delivery, caps it
// at max, and spreads it by ±20% so retries of many events do not align.
func ExponentialBackoff(base, max time.Duration) func(int) time.Duration {
	return func(delivery int) time.Duration {
		d := base
		for i := 1; i < delivery && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		jitter := 0.8 + 0.4*rand.Float64()
		return time.Duration(float64(d) * jitter)
	}
}

// Consumer is a running durable consumer: one subscription on EVENTS and
// one on REPLAY (dead letters sent back to it), feeding a pool of workers.
type Consumer struct {
	bus     *Bus
	cfg     ConsumerConfig
	handle  BatchHandler
	batch   int
	log     *slog.Logger
	ctx     context.Context // handlers' base context; cancelled after Stop
	cancel  context.CancelFunc
	subs    []jetstream.ConsumeContext
	typesMu sync.Mutex // guards cfg.Types, changed by SetTypes
	// balance holds this instance's partitions (partitioned consumers).
	balance     *balancer
	stopBalance context.CancelFunc
	balanced    chan struct{}
	workers     []*queue
	held        held
	wg          sync.WaitGroup
	stop        sync.Once
}

// Consume starts a durable consumer of cfg.Types that handles one event at
// a time, creating or updating it on the broker, and returns once messages
// are flowing. Call Stop to drain it.
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, h Handler) (*Consumer, error) {
	one := func(ctx context.Context, evs []Event) []error {
		if err := h(ctx, evs[0]); err != nil {
			return []error{err}
		}
		return nil
	}
	return b.consume(ctx, cfg, one, 1)
}

// ConsumeBatch is Consume for a handler that takes up to cfg.MaxBatch
// events at once, so a database-backed consumer commits once per batch
// instead of once per event.
func (b *Bus) ConsumeBatch(ctx context.Context, cfg ConsumerConfig, h BatchHandler) (*Consumer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return b.consume(ctx, cfg, h, cfg.MaxBatch)
}

func (b *Bus) consume(ctx context.Context, cfg ConsumerConfig, h BatchHandler, batch int) (*Consumer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Consumer{bus: b, cfg: cfg, handle: h, batch: batch, log: b.log.With("consumer", cfg.Name)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.held.since = map[jetstream.Msg]time.Time{}
	c.workers = make([]*queue, cfg.Concurrency)
	for i := range c.workers {
		c.workers[i] = newQueue()
		c.wg.Add(1)
		go c.work(c.workers[i])
	}
	go c.keepAlive()
	type source struct {
		stream, name string
		filters      []string
		start        bool // consumed from the start; partitions when leased
	}
	sources := []source{{StreamReplay, cfg.Name, []string{replayPrefix + cfg.Name + ".>"}, true}}
	if b.cfg.Partitioned {
		for p := range Partitions {
			sources = append(sources, source{StreamEvents, partitionName(cfg.Name, p), TypeSubjects(cfg.Types, p), false})
		}
	} else {
		sources = append(sources, source{StreamEvents, cfg.Name, TypeSubjects(cfg.Types, -1), true})
	}
	for _, src := range sources {
		cons, err := b.ensureConsumer(ctx, src.stream, jetstream.ConsumerConfig{
			Durable:        src.name,
			Description:    "ordermesh consumer " + cfg.Name,
			FilterSubjects: src.filters,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        cfg.AckWait,
			MaxDeliver:     -1, // the consumer dead-letters by itself, so it sees the last delivery
			MaxAckPending:  4096,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("create consumer %s on %s: %w", src.name, src.stream, err)
		}
		if !src.start {
			continue
		}
		sub, err := c.consumeFrom(cons, src.stream)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("consume %s on %s: %w", src.name, src.stream, err)
		}
		c.subs = append(c.subs, sub)
	}
	b.metrics.add(c)
	if b.cfg.Partitioned {
		leases, members, err := b.leases(ctx)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.balance = &balancer{c: c, kv: leases, members: members, instance: b.cfg.Instance, owned: map[int]*lease{}}
		bctx, cancel := context.WithCancel(context.Background())
		c.stopBalance, c.balanced = cancel, make(chan struct{})
		go func() {
			defer close(c.balanced)
			c.balance.run(bctx)
		}()
	}
	return c, nil
}

// Partitions are the partitions this instance consumes now (nil for a
// consumer that is not partitioned).
func (c *Consumer) Partitions() []int {
	if c.balance == nil {
		return nil
	}
	c.balance.mu.Lock()
	defer c.balance.mu.Unlock()
	out := make([]int, 0, len(c.balance.owned))
	for p := range c.balance.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
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

// SetTypes changes the event types the durable consumer receives, on the
// broker, for every instance: each of its partitions when it is
// partitioned. Events of an added type stored after the consumer's current
// position are delivered; those of a removed type are no longer. Errors:
// the broker's.
func (c *Consumer) SetTypes(ctx context.Context, types []string) error {
	if len(types) == 0 {
		return fmt.Errorf("consumer %s: no event types", c.cfg.Name)
	}
	c.typesMu.Lock()
	defer c.typesMu.Unlock()
	update := func(name string, filters []string) error {
		cons, err := c.bus.js.Consumer(ctx, StreamEvents, name)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		cfg := cons.CachedInfo().Config
		cfg.FilterSubject, cfg.FilterSubjects = "", filters
		if _, err := c.bus.js.UpdateConsumer(ctx, StreamEvents, cfg); err != nil {
			return fmt.Errorf("update consumer %s: %w", name, err)
		}
		return nil
	}
	if c.bus.cfg.Partitioned {
		for p := range Partitions {
			if err := update(partitionName(c.cfg.Name, p), TypeSubjects(types, p)); err != nil {
				return err
			}
		}
	} else if err := update(c.cfg.Name, TypeSubjects(types, -1)); err != nil {
		return err
	}
	c.cfg.Types = slices.Clone(types)
	return nil
}

// AddTypes adds event types to those the durable consumer receives on the
// broker, keeping the ones it has there (whichever instance set them).
func (c *Consumer) AddTypes(ctx context.Context, types []string) error {
	name := c.cfg.Name
	if c.bus.cfg.Partitioned {
		name = partitionName(name, 0)
	}
	cons, err := c.bus.js.Consumer(ctx, StreamEvents, name)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", name, err)
	}
	have := map[string]bool{}
	for _, subject := range cons.CachedInfo().Config.FilterSubjects {
		if tokens := strings.Split(subject, "."); len(tokens) >= 3 {
			have[tokens[1]+"."+tokens[2]] = true
		}
	}
	all := slices.Sorted(maps.Keys(have))
	for _, t := range types {
		if !have[t] {
			all = append(all, t)
		}
	}
	if len(all) == len(have) {
		return nil
	}
	return c.SetTypes(ctx, all)
}

// consumeFrom starts feeding cons's messages to the workers.
func (c *Consumer) consumeFrom(cons jetstream.Consumer, stream string) (jetstream.ConsumeContext, error) {
	return cons.Consume(c.dispatch,
		jetstream.PullMaxMessages(512),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Warn("consume", "stream", stream, "err", err)
		}))
}

// stopWait bounds how long Stop waits for the events in hand.
const stopWait = 10 * time.Second

// Stop stops fetching, lets the workers finish the events already received
// (acknowledging them), and returns when they are done or after stopWait
// (unfinished events are redelivered later). A partitioned consumer then
// gives its leases back, so other instances take its partitions at once.
func (c *Consumer) Stop() {
	c.stop.Do(func() {
		subs := c.subs
		if c.balance != nil {
			c.stopBalance()
			<-c.balanced
			subs = append(subs, c.balance.subs()...)
		}
		for _, s := range subs {
			s.Drain()
		}
		deadline := time.After(stopWait)
		for _, s := range subs {
			select {
			case <-s.Closed():
			case <-deadline:
			}
		}
		for _, w := range c.workers {
			w.close()
		}
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-deadline:
		}
		if c.balance != nil {
			c.balance.giveBack()
		}
		c.cancel()
	})
}

// dispatch routes a message to a worker by its subject (order id), so
// events about one order are handled one after another.
func (c *Consumer) dispatch(msg jetstream.Msg) {
	key := msg.Headers().Get(HeaderSubject)
	if key == "" {
		key = msg.Subject()
	}
	// FNV-1a, inline: no allocation per message.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	c.held.add(msg)
	c.workers[h%uint32(len(c.workers))].push(msg)
}

// keepAlive reports every held message older than AckWait/3 as in
// progress, every AckWait/3, until the consumer's context ends.
func (c *Consumer) keepAlive() {
	interval := c.cfg.AckWait / 3
	every.After(c.ctx, interval, func(context.Context) {
		for _, m := range c.held.older(interval) {
			if err := m.InProgress(); err != nil {
				c.log.Debug("in progress", "subject", m.Subject(), "err", err)
			}
		}
	})
}

// work handles the messages routed to one worker, taking together those
// already waiting (up to the batch size), lingering for more if configured.
func (c *Consumer) work(q *queue) {
	defer c.wg.Done()
	batch := make([]jetstream.Msg, 0, c.batch)
	for {
		batch = q.take(batch[:0], c.batch, c.cfg.Linger)
		if len(batch) == 0 {
			return
		}
		c.process(batch)
	}
}

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
		ev, err := Decode(msg.Headers(), msg.Data())
		if err == nil && c.bus.cfg.Validate != nil {
			err = c.bus.cfg.Validate(ev.Type, ev.Data)
		}
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

// startHandling starts the span of one event's handling, a child of its
// emission's. The event then carries the handling's traceparent, so that
// the events the handler emits because of it become its children.
func (c *Consumer) startHandling(msg jetstream.Msg, md *jetstream.MsgMetadata, ev Event) delivery {
	ctx, span := telemetry.StartEvent(c.ctx, "handle "+ev.Type, trace.SpanKindConsumer, ev.TraceParent,
		telemetry.AttrConsumer.String(c.cfg.Name), telemetry.AttrEventID.String(ev.ID),
		telemetry.AttrEventType.String(ev.Type), telemetry.AttrOrderID.String(ev.Subject))
	if tp := telemetry.TraceParent(ctx); tp != "" {
		ev.TraceParent = tp
	}
	return delivery{msg: msg, md: md, ev: ev, span: span}
}

// LogAttrs are the log attributes of every line about an event: its id and
// type, its order (subject) and its trace.
func LogAttrs(ev Event) []any {
	return []any{"event", ev.ID, "type", ev.Type, "order_id", ev.Subject, "trace_id", telemetry.TraceID(telemetry.WithTraceParent(context.Background(), ev.TraceParent))}
}

// headerLogAttrs are LogAttrs read from a message's headers, for a message
// that could not be decoded (its headers are as received).
func headerLogAttrs(h nats.Header) []any {
	return LogAttrs(Event{ID: h.Get(HeaderID), Type: h.Get(HeaderType), Subject: h.Get(HeaderSubject), TraceParent: h.Get(HeaderTraceParent)})
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

// settle acks, retries or dead-letters one message by its handler outcome.
func (c *Consumer) settle(d delivery, err error) {
	defer c.held.remove(d.msg)
	if err != nil {
		d.span.RecordError(err)
		d.span.SetStatus(codes.Error, err.Error())
	}
	defer d.span.End()
	switch {
	case err == nil:
		c.count(d.ev.Type, "ok")
		if err := d.msg.Ack(); err != nil {
			c.log.Warn("ack", append(LogAttrs(d.ev), "err", err)...)
		}
	case IsPermanent(err):
		c.deadLetter(d.msg, d.md, err)
	case int(d.md.NumDelivered) >= c.cfg.MaxDeliver:
		c.deadLetter(d.msg, d.md, fmt.Errorf("failed %d deliveries, last error: %w", d.md.NumDelivered, err))
	default:
		c.count(d.ev.Type, "retry")
		delay := c.cfg.Backoff(int(d.md.NumDelivered))
		c.log.Debug("transient failure; will retry", append(LogAttrs(d.ev), "delivery", d.md.NumDelivered, "retry_in", delay, "err", err)...)
		if err := d.msg.NakWithDelay(delay); err != nil {
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

// Dead-letter headers, beside the original CloudEvents headers.
const (
	HeaderDLQError      = "Ordermesh-Dlq-Error"
	HeaderDLQSubject    = "Ordermesh-Dlq-Subject"
	HeaderDLQStream     = "Ordermesh-Dlq-Stream"
	HeaderDLQStreamSeq  = "Ordermesh-Dlq-Stream-Seq"
	HeaderDLQDeliveries = "Ordermesh-Dlq-Deliveries"
	HeaderDLQConsumer   = "Ordermesh-Dlq-Consumer"
	HeaderDLQTime       = "Ordermesh-Dlq-Time"

	dlqPrefix    = "dlq."
	replayPrefix = "replay."
)

// deadLetter publishes msg to dlq.<consumer>.<type> with why it failed and
// where it came from, then terminates it so the consumer moves on. If the
// dead-letter stream cannot be written, the message is redelivered later
// rather than lost.
func (c *Consumer) deadLetter(msg jetstream.Msg, md *jetstream.MsgMetadata, cause error) {
	defer c.held.remove(msg)
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		h[k] = v
	}
	h.Set(HeaderDLQError, headerValue(cause.Error()))
	h.Set(HeaderDLQSubject, msg.Subject())
	h.Set(HeaderDLQStream, md.Stream)
	h.Set(HeaderDLQStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	h.Set(HeaderDLQConsumer, c.cfg.Name)
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s.%s.%d", c.cfg.Name, md.Stream, md.Sequence.Stream))
	dl := &nats.Msg{
		Subject: dlqPrefix + c.cfg.Name + "." + subjectToken(msg.Headers().Get(HeaderType)),
		Header:  h,
		Data:    msg.Data(),
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if _, err := c.bus.js.PublishMsg(ctx, dl); err != nil {
		c.log.Error("dead-letter publish failed; will redeliver", append(headerLogAttrs(msg.Headers()), "subject", msg.Subject(), "seq", md.Sequence.Stream, "err", err)...)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	c.log.Warn("dead-lettered", append(headerLogAttrs(msg.Headers()), "subject", msg.Subject(), "seq", md.Sequence.Stream, "deliveries", md.NumDelivered, "err", cause)...)
	c.count(subjectToken(msg.Headers().Get(HeaderType)), "dead_letter")
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		c.log.Warn("term", "seq", md.Sequence.Stream, "err", err)
	}
}

// headerValue makes s safe as a NATS header value: one line, at most 4 KiB.
func headerValue(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 4096 {
		s = s[:4096]
	}
	return s
}

// subjectToken makes an event type usable inside a subject: tokens of
// letters, digits, '-' and '_' separated by dots; "unknown" when empty.
func subjectToken(typ string) string {
	parts := strings.Split(typ, ".")
	out := parts[:0]
	for _, p := range parts {
		p = strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
				return r
			}
			return '_'
		}, p)
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "unknown"
	}
	return strings.Join(out, ".")
}
