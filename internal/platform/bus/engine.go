package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Broker is what ordermesh's services, outbox relays and operators need of
// a message broker, whichever engine runs it: *Bus on NATS JetStream, and
// internal/platform/rabbitmq on RabbitMQ. It is shaped by what both can
// do. Where one lacks a feature, its implementation says what it does
// instead (RabbitMQ keeps no history: Tail starts at now, History is
// ErrNoHistory).
type Broker interface {
	// PublishAsync sends events in order; Wait on the result says which
	// the broker stored. A re-sent event may be stored twice (RabbitMQ
	// has no publish de-duplication, JetStream drops a re-send within its
	// window): consumers' inboxes drop the copies.
	PublishAsync(events []Event) Pending
	// Subscribe starts a durable consumer of cfg.Types handled in batches
	// by h: every instance that subscribes with cfg.Name shares it, and
	// each event reaches one of them.
	Subscribe(ctx context.Context, cfg ConsumerConfig, h BatchHandler) (Subscription, error)
	// Changed tells every instance that the entity of kind with id
	// changed (best effort: it wakes long polls); OnChanged hears it.
	Changed(kind, id string)
	OnChanged(kind string, f func(id string)) (stop func(), err error)
	// CaughtUp reports whether consumer has handled every event of typ
	// about subject that the broker holds.
	CaughtUp(ctx context.Context, consumer, typ, subject string) (bool, error)
	// Tail calls f with the events opts select as they are published.
	Tail(ctx context.Context, opts TailOptions, f func(seq uint64, ev Event) error) error
	// History is the events about subject since since, in order.
	History(ctx context.Context, subject string, since time.Time, scan int) (evs []Event, truncated bool, err error)
	DeadLetterStore
	// Healthy is nil while the broker is connected, else what is wrong.
	Healthy() error
	// Engine names the engine: "nats" or "rabbitmq".
	Engine() string
}

// DeadLetterStore is the dead-letter queue's operations (`ordermesh dlq`).
type DeadLetterStore interface {
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	DeadLetter(ctx context.Context, id uint64) (DeadLetter, error)
	// Replay sends a dead letter back to its consumer alone and removes it.
	Replay(ctx context.Context, id uint64) error
	PurgeDeadLetters(ctx context.Context) (uint64, error)
}

// Pending is a batch on its way to the broker.
type Pending interface {
	// Wait returns each event's outcome (errs[i] for events[i]), or nil
	// when the broker stored every one.
	Wait(ctx context.Context) (errs []error)
}

// Subscription is a running durable consumer.
type Subscription interface {
	// SetTypes changes the event types it receives, for every instance;
	// AddTypes adds to them, keeping those other instances added.
	SetTypes(ctx context.Context, types []string) error
	AddTypes(ctx context.Context, types []string) error
	// Stop stops receiving and waits for the handlers under way.
	Stop()
}

var (
	_ Broker       = (*Bus)(nil)
	_ Subscription = (*Consumer)(nil)
)

// ErrNoHistory is History's error on an engine that keeps no history.
var ErrNoHistory = fmt.Errorf("this broker keeps no history of events (RabbitMQ queues forget what they delivered): an order's events are in the services' logs and traces")

// Subscribe is ConsumeBatch as a Broker's.
func (b *Bus) Subscribe(ctx context.Context, cfg ConsumerConfig, h BatchHandler) (Subscription, error) {
	return b.ConsumeBatch(ctx, cfg, h)
}

// CaughtUp reports whether consumer has acknowledged the last event of typ
// about subject in EVENTS (true when there is none).
func (b *Bus) CaughtUp(ctx context.Context, consumer, typ, subject string) (bool, error) {
	seq, err := b.LastSequence(ctx, typ, subject)
	if err != nil || seq == 0 {
		return err == nil, err
	}
	return b.AckedThrough(ctx, consumer, subject, seq)
}

// Healthy is nil while the connection to NATS is up.
func (b *Bus) Healthy() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("disconnected: %s", b.nc.Status())
	}
	return nil
}

// Engine is "nats".
func (b *Bus) Engine() string { return "nats" }

// Admit decodes a received message and checks it against cfg's contracts
// (Validate, Sources): an event it refuses is dead-lettered before any
// handler sees it, on either engine.
func (cfg Config) Admit(h nats.Header, data []byte) (Event, error) {
	ev, err := Decode(h, data)
	if err == nil && cfg.Validate != nil {
		err = cfg.Validate(ev.Type, ev.Data)
	}
	if want, ok := cfg.Sources[ev.Type]; ok && err == nil && ev.Source != want {
		err = fmt.Errorf("%w: %s may only come from %s, not %q", ErrForeignSource, ev.Type, want, ev.Source)
	}
	return ev, err
}

// Settlement is what becomes of a handled message (Outcome).
type Settlement = settlement

// The settlements.
const (
	SettleAck        = ack
	SettleRetry      = retry
	SettleDeadLetter = deadLetter
)

// Outcome is the consumers' shared decision, for another engine's: from
// the handler's error, the deliveries so far (this one included), the
// limit and the backoff, whether to ack, retry after delay, or
// dead-letter with cause.
func Outcome(err error, delivered, maxDeliver int, backoff func(int) time.Duration) (act Settlement, delay time.Duration, cause error) {
	v := outcome(err, delivered, maxDeliver, backoff)
	return v.act, v.delay, v.cause
}

// WithDefaults is the ConsumerConfig with its defaults filled in, for another
// engine's consumer; an error says what is wrong with it.
func (c ConsumerConfig) WithDefaults() (ConsumerConfig, error) {
	err := c.validate()
	return c, err
}
