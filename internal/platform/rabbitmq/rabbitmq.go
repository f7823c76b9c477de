// Package rabbitmq is ordermesh's bus on RabbitMQ (bus.Broker), over the
// client RabbitMQ's team maintains (github.com/rabbitmq/amqp091-go).
//
// The topology, declared at start by every instance, idempotently:
//   - events go to the topic exchange ordermesh.events, routing key = the
//     event type, as persistent messages, each one "sent" only once the
//     broker confirms it (publisher confirms);
//   - each consuming service has one durable quorum queue,
//     ordermesh.<consumer>, bound to its types, with a single active
//     consumer: the broker delivers it to one instance at a time, in order,
//     and hands it to another when that instance's connection dies; no
//     lease of ordermesh's decides who consumes;
//   - an event no queue is bound for goes to ordermesh.unrouted (the
//     exchange's alternate exchange) instead of vanishing;
//   - dead letters go to the quorum queue ordermesh.dlq, by the consumer
//     with the reason in headers, or by the broker (x-delivery-limit) for a
//     message no consumer could settle at all.
//
// RabbitMQ has no publish de-duplication: an event re-sent after a lost
// confirm is stored twice, and the consumers' inboxes drop the copy.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// Exchanges and queues of the topology.
const (
	ExchangeEvents   = "ordermesh.events"
	ExchangeUnrouted = "ordermesh.unrouted"
	ExchangeDLQ      = "ordermesh.dlq"
	ExchangeChanged  = "ordermesh.changed"
	QueueUnrouted    = "ordermesh.unrouted"
	QueueDLQ         = "ordermesh.dlq"
	queuePrefix      = "ordermesh."

	// DeliveryLimit is the broker's own limit of deliveries of one message
	// (x-delivery-limit), a backstop past the consumers' --max-deliver for
	// a message that no consumer can settle at all (its handling crashes
	// the process): the broker dead-letters it to ordermesh.dlq. Fixed, so
	// every instance declares its queues alike.
	DeliveryLimit = 64
)

// Broker is a connection to RabbitMQ that reconnects, with backoff, for as
// long as it is open; its consumers and publishers carry on over the new
// connection.
type Broker struct {
	url, name string
	cfg       bus.Config
	log       *slog.Logger

	mu      sync.Mutex
	conn    *amqp.Connection
	up      chan struct{} // closed while conn is usable
	closing bool
	done    chan struct{} // closed by Close

	metrics *metrics // nil without Config.Metrics

	pubMu sync.Mutex
	pub   *amqp.Channel // the publishing channel, in confirm mode
}

var _ bus.Broker = (*Broker)(nil)

// Dial connects to RabbitMQ at url (amqp://user:password@host:5672/vhost),
// retrying the first connection for a while, and declares the topology.
// name names the connection in RabbitMQ's management views.
func Dial(ctx context.Context, url, name string, cfg bus.Config) (*Broker, error) {
	b := &Broker{url: url, name: name, cfg: cfg, log: cfg.Logger, up: make(chan struct{}), done: make(chan struct{})}
	if b.log == nil {
		b.log = slog.Default()
	}
	if cfg.Metrics != nil {
		b.metrics = newMetrics(b, cfg.Metrics)
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		var conn *amqp.Connection
		if conn, err = b.dial(); err == nil {
			b.conn = conn
			close(b.up)
			go b.supervise(conn)
			if err := b.EnsureTopology(ctx); err != nil {
				b.Close()
				return nil, err
			}
			return b, nil
		}
		if errors.Is(err, amqp.ErrCredentials) || strings.Contains(err.Error(), "ACCESS_REFUSED") {
			return nil, fmt.Errorf("connect to RabbitMQ at %s: %w (the broker refused the credentials: check the user:password in --broker)", Redact(url), err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("connect to RabbitMQ at %s: %w (is the broker running and --broker right?)", Redact(url), err)
}

// Redact is url with its password replaced by xxxxx.
func Redact(url string) string {
	if u, err := neturl.Parse(url); err == nil && u.User != nil {
		return u.Redacted()
	}
	return url
}

func (b *Broker) dial() (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(b.name)
	return amqp.DialConfig(b.url, amqp.Config{Heartbeat: 5 * time.Second, Properties: props, Dial: amqp.DefaultDial(5 * time.Second)})
}

// supervise waits for conn to drop and dials again, with a backoff from
// 250ms to 5s, until it succeeds or Close is called.
func (b *Broker) supervise(conn *amqp.Connection) {
	for {
		lost := <-conn.NotifyClose(make(chan *amqp.Error, 1))
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			return
		}
		b.up = make(chan struct{})
		b.mu.Unlock()
		b.log.Warn("RabbitMQ connection lost; reconnecting", "err", lost)
		for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			select {
			case <-b.done:
				return
			case <-time.After(wait):
			}
			next, err := b.dial()
			if err != nil {
				b.log.Warn("RabbitMQ reconnect", "err", err, "retry_in", min(2*wait, 5*time.Second))
				continue
			}
			b.mu.Lock()
			b.conn, conn = next, next
			close(b.up)
			b.mu.Unlock()
			b.log.Info("RabbitMQ connection restored")
			break
		}
	}
}

// channel opens a channel on the connection, waiting for one while the
// broker is away, until ctx ends.
func (b *Broker) channel(ctx context.Context) (*amqp.Channel, error) {
	for {
		b.mu.Lock()
		conn, up, closing := b.conn, b.up, b.closing
		b.mu.Unlock()
		if closing {
			return nil, errors.New("rabbitmq: broker connection closed")
		}
		select {
		case <-up:
			ch, err := conn.Channel()
			if err == nil || !conn.IsClosed() {
				return ch, err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("RabbitMQ unavailable: %w", ctx.Err())
		}
		select { // the connection just dropped: supervise is on it
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("RabbitMQ unavailable: %w", ctx.Err())
		}
	}
}

// Close closes the connection: unacknowledged deliveries go back to their
// queues.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil
	}
	b.closing = true
	close(b.done)
	conn := b.conn
	b.mu.Unlock()
	return conn.Close()
}

// Healthy is nil while the connection is up.
func (b *Broker) Healthy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil || b.conn.IsClosed() {
		return errors.New("disconnected from RabbitMQ; reconnecting")
	}
	return nil
}

// Engine is "rabbitmq".
func (b *Broker) Engine() string { return "rabbitmq" }

// quorum are a durable quorum queue's arguments.
func quorum(extra amqp.Table) amqp.Table {
	args := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

// EnsureTopology declares the exchanges and the shared queues. Every
// declaration is idempotent: every instance makes it at start.
func (b *Broker) EnsureTopology(ctx context.Context) error {
	ch, err := b.channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	steps := []func() error{
		func() error {
			return ch.ExchangeDeclare(ExchangeUnrouted, amqp.ExchangeFanout, true, false, false, false, nil)
		},
		func() error {
			return ch.ExchangeDeclare(ExchangeEvents, amqp.ExchangeTopic, true, false, false, false, amqp.Table{"alternate-exchange": ExchangeUnrouted})
		},
		func() error {
			return ch.ExchangeDeclare(ExchangeDLQ, amqp.ExchangeFanout, true, false, false, false, nil)
		},
		func() error {
			return ch.ExchangeDeclare(ExchangeChanged, amqp.ExchangeTopic, true, false, false, false, nil)
		},
		func() error {
			_, err := ch.QueueDeclare(QueueUnrouted, true, false, false, false, quorum(nil))
			return err
		},
		func() error { return ch.QueueBind(QueueUnrouted, "", ExchangeUnrouted, false, nil) },
		func() error { _, err := ch.QueueDeclare(QueueDLQ, true, false, false, false, quorum(nil)); return err },
		func() error { return ch.QueueBind(QueueDLQ, "", ExchangeDLQ, false, nil) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("declare RabbitMQ topology: %w", err)
		}
	}
	return nil
}

// keep runs session on a channel of its own, again on a new channel
// whenever the last one closed (the broker restarted, the connection
// dropped), with a backoff from 250ms to 5s, until ctx ends. A session
// returns when ctx ends or its channel closes.
func (b *Broker) keep(ctx context.Context, what string, session func(ctx context.Context, ch *amqp.Channel) error) {
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		ch, err := b.channel(ctx)
		if err == nil {
			err = session(ctx, ch)
			ch.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 5*time.Second {
			wait = 250 * time.Millisecond
		}
		b.log.Warn("RabbitMQ channel closed; opening another", "for", what, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
