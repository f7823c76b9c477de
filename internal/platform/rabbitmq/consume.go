package rabbitmq

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// subscription is a running consumer of one service's queue.
type subscription struct {
	b      *Broker
	cfg    bus.ConsumerConfig
	queue  string
	handle bus.BatchHandler
	// run ends the receiving; work, the handlers' context, ends after the
	// batch under way when Stop is called.
	run, work         context.Context
	stopRun, stopWork context.CancelFunc
	done              chan struct{}
	typesMu           sync.Mutex
	types             []string
	delayed           atomic.Int64 // retries waiting for their nack
	stopOnce          sync.Once
}

// Subscribe declares cfg's queue (a durable quorum queue with a single
// active consumer, dead-lettering to ordermesh.dlq past DeliveryLimit),
// binds it to cfg.Types and starts consuming it: batches of up to
// cfg.MaxBatch deliveries, prefetch twice that, handled in the order the
// queue holds them.
func (b *Broker) Subscribe(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) (bus.Subscription, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	s := &subscription{b: b, cfg: cfg, queue: queuePrefix + cfg.Name, handle: h, done: make(chan struct{}), types: slices.Clone(cfg.Types)}
	s.run, s.stopRun = context.WithCancel(context.Background())
	s.work, s.stopWork = context.WithCancel(context.Background())
	if err := s.declare(ctx); err != nil {
		return nil, err
	}
	b.metrics.add(s)
	go func() {
		defer close(s.done)
		b.keep(s.run, "consumer "+cfg.Name, s.session)
	}()
	return s, nil
}

// declare declares the queue and binds it to the consumer's types, and
// unbinds it from the catalog's other types (a type the service no longer
// consumes).
func (s *subscription) declare(ctx context.Context) error {
	ch, err := s.b.channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	args := quorum(amqp.Table{amqp.SingleActiveConsumerArg: true, "x-dead-letter-exchange": ExchangeDLQ, "x-delivery-limit": DeliveryLimit})
	if _, err := ch.QueueDeclare(s.queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s: %w (a queue of that name declared otherwise must be deleted first)", s.queue, err)
	}
	return s.bind(ch, s.currentTypes())
}

func (s *subscription) currentTypes() []string {
	s.typesMu.Lock()
	defer s.typesMu.Unlock()
	return slices.Clone(s.types)
}

// bind binds the queue to types and unbinds it from every other type the
// catalog (Config.Sources) knows.
func (s *subscription) bind(ch *amqp.Channel, types []string) error {
	for _, t := range types {
		if err := ch.QueueBind(s.queue, t, ExchangeEvents, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", s.queue, t, err)
		}
	}
	for t := range s.b.cfg.Sources {
		if !slices.Contains(types, t) {
			if err := ch.QueueUnbind(s.queue, t, ExchangeEvents, nil); err != nil {
				return fmt.Errorf("unbind %s from %s: %w", s.queue, t, err)
			}
		}
	}
	return nil
}

// SetTypes binds the queue to types instead, for every instance: it is
// unbound from every other type of the catalog.
func (s *subscription) SetTypes(ctx context.Context, types []string) error {
	if len(types) == 0 {
		return fmt.Errorf("consumer %s: no event types", s.cfg.Name)
	}
	return s.rebind(ctx, func([]string) []string { return slices.Clone(types) })
}

// AddTypes binds the queue to types too, keeping its other bindings.
func (s *subscription) AddTypes(ctx context.Context, types []string) error {
	return s.rebind(ctx, func(have []string) []string {
		for _, t := range types {
			if !slices.Contains(have, t) {
				have = append(have, t)
			}
		}
		return have
	})
}

// rebind binds the queue to the types change makes of its current ones.
func (s *subscription) rebind(ctx context.Context, change func(have []string) []string) error {
	ch, err := s.b.channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	s.typesMu.Lock()
	defer s.typesMu.Unlock()
	types := change(slices.Clone(s.types))
	if err := s.bind(ch, types); err != nil {
		return err
	}
	s.types = types
	return nil
}

// Stop stops receiving, lets the batch under way finish, and closes the
// channel: what was received and not handled goes back to the queue.
func (s *subscription) Stop() {
	s.stopOnce.Do(func() {
		s.stopRun()
		<-s.done
		s.stopWork()
	})
}

// session consumes the queue on ch until ch closes or the subscription
// stops. Deliveries go to cfg.Concurrency workers by order (subject), so
// one order's events are handled in the order the queue holds them and
// different orders' at once; each worker takes what has arrived, up to
// MaxBatch (lingering up to Linger for more), handles it and settles each
// delivery. When it ends, the workers finish their batches.
func (s *subscription) session(ctx context.Context, ch *amqp.Channel) error {
	if err := ch.Qos(2*s.cfg.MaxBatch, 0, false); err != nil {
		return err
	}
	msgs, err := ch.Consume(s.queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	acks := newAcker(ch, 2*s.cfg.MaxBatch)
	workers := make([]chan amqp.Delivery, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan amqp.Delivery, 2*s.cfg.MaxBatch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range workers[i] {
				s.process(gather(ctx, workers[i], first, s.cfg.MaxBatch, s.cfg.Linger), acks)
			}
		}()
	}
	defer func() {
		for _, w := range workers {
			close(w)
		}
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-msgs:
			if !ok {
				return fmt.Errorf("deliveries of %s ended", s.queue)
			}
			subject, _ := d.Headers[bus.HeaderSubject].(string)
			workers[bus.WorkerOf(subject, len(workers))] <- d
		}
	}
}

// gather is first and the deliveries already there, up to max, waiting up
// to linger for more.
func gather(ctx context.Context, msgs <-chan amqp.Delivery, first amqp.Delivery, max int, linger time.Duration) []amqp.Delivery {
	batch := []amqp.Delivery{first}
	var deadline <-chan time.Time
	if linger > 0 {
		t := time.NewTimer(linger)
		defer t.Stop()
		deadline = t.C
	}
	for len(batch) < max {
		select {
		case d, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, d)
			continue
		default:
		}
		if deadline == nil {
			return batch
		}
		select {
		case d, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, d)
		case <-deadline:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// received is a delivery on its way through process.
type received struct {
	d         amqp.Delivery
	ev        bus.Event
	delivered int
	span      trace.Span
}

// process admits a batch (decoding and checking each event, dead-lettering
// what cannot be handled), runs the handler on the rest and settles each
// delivery by its outcome.
func (s *subscription) process(batch []amqp.Delivery, acks *acker) {
	rs := make([]received, 0, len(batch))
	var done []amqp.Delivery // to acknowledge
	for _, d := range batch {
		delivered := deliveries(d)
		ev, err := s.b.cfg.Admit(header(d.Headers), d.Body)
		if err == nil && delivered > s.cfg.MaxDeliver {
			err = fmt.Errorf("no acknowledgement after %d deliveries (handler crashed or exceeded %s)", delivered-1, s.cfg.HandlerTimeout)
		}
		if err == nil {
			rs = append(rs, s.startHandling(d, ev, delivered))
		} else if s.deadLetter(d, delivered, err, acks) {
			done = append(done, d)
		}
	}
	if len(rs) > 0 {
		evs := make([]bus.Event, len(rs))
		for i, r := range rs {
			evs[i] = r.ev
		}
		start := time.Now()
		errs := s.call(evs)
		s.b.metrics.observe(s.cfg.Name, rs, time.Since(start))
		for i, r := range rs {
			var err error
			if errs != nil {
				err = errs[i]
			}
			if s.settle(r, err, acks) {
				done = append(done, r.d)
			}
		}
	}
	acks.settle(true, done...)
}

// deliveries is how many times d has been delivered, this time included:
// quorum queues count the earlier ones in x-delivery-count.
func deliveries(d amqp.Delivery) int {
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(n) + 1
	case int32:
		return int(n) + 1
	case int:
		return n + 1
	}
	return 1
}

func (s *subscription) startHandling(d amqp.Delivery, ev bus.Event, delivered int) received {
	ev, span := bus.StartHandling(s.work, s.cfg.Name, ev)
	return received{d: d, ev: ev, delivered: delivered, span: span}
}

// call runs the handler with its deadline, turning a panic into a
// transient error for every event of the batch.
func (s *subscription) call(evs []bus.Event) (errs []error) {
	ctx, cancel := context.WithTimeout(s.work, s.cfg.HandlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			errs = bus.FailAll(len(evs), fmt.Errorf("handler panic: %v", r))
		}
	}()
	errs = s.handle(ctx, evs)
	if errs != nil && len(errs) != len(evs) {
		panic(fmt.Sprintf("rabbitmq: batch handler of %s returned %d results for %d events", s.cfg.Name, len(errs), len(evs)))
	}
	return errs
}

// settle decides what becomes of a handled delivery (bus.Outcome, shared
// with JetStream's consumers) and reports whether to acknowledge it. A
// retry is a nack that puts it back in the queue after the backoff (the
// broker counts it in x-delivery-count); the prefetch bounds how many wait.
func (s *subscription) settle(r received, err error, acks *acker) bool {
	defer r.span.End()
	if err != nil {
		r.span.RecordError(err)
		r.span.SetStatus(codes.Error, err.Error())
	}
	act, delay, cause := bus.Outcome(err, r.delivered, s.cfg.MaxDeliver, s.cfg.Backoff)
	switch act {
	case bus.SettleDeadLetter:
		return s.deadLetter(r.d, r.delivered, cause, acks)
	case bus.SettleRetry:
		s.b.metrics.count(s, r.ev.Type, "retry")
		s.b.log.Debug("transient failure; will retry", append(bus.LogAttrs(r.ev), "delivery", r.delivered, "retry_in", delay, "err", err)...)
		s.nackAfter(r.d, delay, acks)
		return false
	}
	s.b.metrics.count(s, r.ev.Type, "ok")
	return true
}

// nackAfter puts d back in its queue after delay.
func (s *subscription) nackAfter(d amqp.Delivery, delay time.Duration, acks *acker) {
	acks.wait(d)
	time.AfterFunc(delay, func() {
		_ = d.Nack(false, true) // a closed channel has put it back already
		acks.settle(false, d)
	})
}
