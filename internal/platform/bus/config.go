package bus

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"time"
)

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
	// Unpartitioned keeps this consumer one durable consumer shared by
	// every instance even on a partitioned bus (Config.Partitioned): for a
	// consumer whose handling of one order's events does not depend on
	// their order across instances (within an instance they are still
	// handled in order). It spares the broker a replicated consumer per
	// partition.
	Unpartitioned bool
	// Backoff returns the redelivery delay after the given delivery failed
	// transiently. Nil means exponential from 250ms, capped at 30s, ±20%.
	Backoff func(delivery int) time.Duration
}

var consumerName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// partitioned reports whether the consumer is one durable consumer per
// partition on a bus configured with partitioned.
func (c *ConsumerConfig) partitioned(partitioned bool) bool { return partitioned && !c.Unpartitioned }

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
