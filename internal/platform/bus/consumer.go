package bus

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/every"
)

// Consumer is a running durable consumer: one subscription on EVENTS and
// one on REPLAY (dead letters sent back to it), feeding a pool of workers.
type Consumer struct {
	bus    *Bus
	cfg    ConsumerConfig
	handle BatchHandler
	batch  int
	log    *slog.Logger
	ctx    context.Context // handlers' base context; cancelled after Stop
	cancel context.CancelFunc
	subsMu sync.Mutex // guards subs and stopping
	subs   []jetstream.ConsumeContext
	// stopping: Stop has begun; a subscription ending now is not lost.
	stopping bool
	typesMu  sync.Mutex // guards cfg.Types, changed by SetTypes
	// balance holds this instance's partitions (partitioned consumers).
	balance     *balancer
	stopBalance context.CancelFunc
	balanced    chan struct{}
	workers     []*queue
	held        held
	wg          sync.WaitGroup
	stop        sync.Once
	// advisories is the subscription to the broker's max-deliveries
	// advisories (watchMaxDeliveries).
	advisories *nats.Subscription
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
	if cfg.partitioned(b.cfg.Partitioned) {
		c.balance = &balancer{c: c}
	}
	for i, src := range b.sources(cfg) {
		cons, err := b.ensureConsumer(ctx, src.stream, c.durable(src))
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("create consumer %s on %s: %w", src.name, src.stream, err)
		}
		sub, err := c.consumeFrom(cons, i, src)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("consume %s on %s: %w", src.name, src.stream, err)
		}
		c.subsMu.Lock()
		c.subs = append(c.subs, sub)
		c.subsMu.Unlock()
	}
	adv, err := c.watchMaxDeliveries()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("watch %s's max deliveries: %w", cfg.Name, err)
	}
	c.advisories = adv
	b.metrics.add(c)
	if c.balance != nil {
		if c.balance.presence, err = c.balance.answer(); err != nil {
			c.Stop()
			return nil, fmt.Errorf("answer %s's presence pings: %w", cfg.Name, err)
		}
		bctx, cancel := context.WithCancel(context.Background())
		c.stopBalance, c.balanced = cancel, make(chan struct{})
		go func() {
			defer close(c.balanced)
			c.balance.run(bctx)
		}()
	}
	return c, nil
}

// Partitions are the partitions the broker had pinned to this instance at
// its last balance round (nil for a consumer that is not partitioned).
func (c *Consumer) Partitions() []int {
	if c.balance == nil {
		return nil
	}
	c.balance.mu.Lock()
	defer c.balance.mu.Unlock()
	return append([]int{}, c.balance.held...)
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
	if c.cfg.partitioned(c.bus.cfg.Partitioned) {
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
	if c.cfg.partitioned(c.bus.cfg.Partitioned) {
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

// stopWait bounds how long Stop waits for the events in hand.
const stopWait = 10 * time.Second

// Stop stops fetching, lets the workers finish the events already received
// (acknowledging them), and returns when they are done or after stopWait
// (unfinished events are redelivered later). A partitioned consumer then
// unpins its partitions, so other instances take them at once.
func (c *Consumer) Stop() {
	c.stop.Do(func() {
		if c.advisories != nil {
			c.advisories.Unsubscribe()
		}
		c.subsMu.Lock()
		c.stopping = true
		subs := slices.Clone(c.subs)
		c.subsMu.Unlock()
		if c.balance != nil && c.balance.presence != nil {
			c.balance.presence.Unsubscribe()
		}
		if c.balance != nil && c.stopBalance != nil {
			c.stopBalance()
			<-c.balanced
			c.balance.wg.Wait()
			c.subsMu.Lock()
			subs = slices.Clone(c.subs) // as the give-backs left them
			c.subsMu.Unlock()
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
			c.balance.unpinAll()
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
	c.held.add(msg, time.Now())
	c.workers[WorkerOf(key, len(c.workers))].push(msg)
}

// keepAlive reports every held message older than AckWait/3 as in
// progress, every AckWait/3, until the consumer's context ends.
func (c *Consumer) keepAlive() {
	interval := c.cfg.AckWait / 3
	every.After(c.ctx, interval, func(context.Context) {
		for _, m := range c.held.older(time.Now().Add(-interval)) {
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
