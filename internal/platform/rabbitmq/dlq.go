package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// HeaderDLQID is a dead letter's id, set by the consumer that
// dead-lettered it (the time it did, in nanoseconds).
const HeaderDLQID = "Ordermesh-Dlq-Id"

// maxBrowse is the most dead letters read by one listing.
const maxBrowse = 10000

// deadLetter publishes d to ordermesh.dlq with why it failed and where,
// and reports whether it was stored (the delivery is then to be
// acknowledged). If it was not, d goes back to its queue after 5s rather
// than being lost.
func (s *subscription) deadLetter(d amqp.Delivery, delivered int, cause error, acks *acker) bool {
	h := bus.DeadLetterHeaders(header(d.Headers), s.cfg.Name, d.RoutingKey, s.queue, d.DeliveryTag, uint64(delivered), cause)
	h.Set(HeaderDLQID, strconv.FormatInt(time.Now().UnixNano(), 10))
	msg := amqp.Publishing{Headers: table(h), ContentType: d.ContentType, DeliveryMode: amqp.Persistent, MessageId: d.MessageId, Type: d.Type, Body: d.Body}
	ctx, cancel := context.WithTimeout(s.work, 10*time.Second)
	defer cancel()
	attrs := bus.LogAttrs(bus.Event{ID: h.Get(bus.HeaderID), Type: h.Get(bus.HeaderType), Subject: h.Get(bus.HeaderSubject)})
	if err := s.b.publish(ctx, ExchangeDLQ, s.cfg.Name, msg); err != nil {
		s.b.log.Error("dead-letter publish failed; will redeliver", append(attrs, "consumer", s.cfg.Name, "err", err)...)
		s.nackAfter(d, 5*time.Second, acks)
		return false
	}
	s.b.metrics.count(s, h.Get(bus.HeaderType), "dead_letter")
	s.b.log.Warn("dead-lettered", append(attrs, "consumer", s.cfg.Name, "deliveries", delivered, "err", cause)...)
	return true
}

// browse reads up to maxBrowse dead letters, oldest first, on a channel
// that holds them unacknowledged; the caller settles or closes it (which
// puts every one it did not acknowledge back).
func (b *Broker) browse(ctx context.Context) (*amqp.Channel, []amqp.Delivery, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ds []amqp.Delivery
	for len(ds) < maxBrowse && ctx.Err() == nil {
		d, ok, err := ch.Get(QueueDLQ, false)
		if err != nil {
			ch.Close()
			return nil, nil, fmt.Errorf("read %s: %w", QueueDLQ, err)
		}
		if !ok {
			break
		}
		ds = append(ds, d)
	}
	return ch, ds, ctx.Err()
}

// deadLetterOf is d as a dead letter. One the broker dead-lettered itself
// (past DeliveryLimit) has no ordermesh headers: its x-death says where it
// was and why, and its id is a hash of its event id and queue.
func deadLetterOf(d amqp.Delivery) bus.DeadLetter {
	h := header(d.Headers)
	id, err := strconv.ParseUint(h.Get(HeaderDLQID), 10, 64)
	if err != nil {
		queue, _ := d.Headers["x-first-death-queue"].(string)
		reason, _ := d.Headers["x-first-death-reason"].(string)
		sum := fnv.New64a()
		sum.Write([]byte(d.MessageId + "\x00" + queue))
		id = sum.Sum64() >> 1
		h.Set(bus.HeaderDLQConsumer, strings.TrimPrefix(queue, queuePrefix))
		h.Set(bus.HeaderDLQStream, queue)
		h.Set(bus.HeaderDLQError, fmt.Sprintf("the broker dead-lettered it (%s): no consumer settled it in %d deliveries", reason, DeliveryLimit))
		h.Set(bus.HeaderDLQSubject, h.Get(bus.HeaderType))
	}
	return bus.DeadLetterFrom(id, h, d.Body, d.Timestamp)
}

// DeadLetters lists the dead letters, oldest first (up to 10,000).
func (b *Broker) DeadLetters(ctx context.Context) ([]bus.DeadLetter, error) {
	ch, ds, err := b.browse(ctx)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	dls := make([]bus.DeadLetter, len(ds))
	for i, d := range ds {
		dls[i] = deadLetterOf(d)
	}
	return dls, nil
}

// DeadLetter is the dead letter id.
func (b *Broker) DeadLetter(ctx context.Context, id uint64) (bus.DeadLetter, error) {
	dls, err := b.DeadLetters(ctx)
	if err != nil {
		return bus.DeadLetter{}, err
	}
	for _, dl := range dls {
		if dl.ID == id {
			return dl, nil
		}
	}
	return bus.DeadLetter{}, fmt.Errorf("%w: %d", bus.ErrDeadLetterNotFound, id)
}

// Replay sends dead letter id back to its consumer's queue alone (through
// the default exchange), confirmed, then removes it from the DLQ. If it
// fails again it becomes a new dead letter.
func (b *Broker) Replay(ctx context.Context, id uint64) error {
	ch, ds, err := b.browse(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, d := range ds {
		dl := deadLetterOf(d)
		if dl.ID != id {
			continue
		}
		if dl.Consumer == "" {
			return fmt.Errorf("dead letter %d names no consumer (header %s); cannot replay it", id, bus.HeaderDLQConsumer)
		}
		t := amqp.Table{}
		for k, v := range header(d.Headers) {
			if !strings.HasPrefix(k, "Ordermesh-Dlq-") {
				t[k] = v[0]
			}
		}
		msg := amqp.Publishing{Headers: t, ContentType: d.ContentType, DeliveryMode: amqp.Persistent, MessageId: d.MessageId, Type: d.Type, Body: d.Body}
		if err := b.publish(ctx, "", queuePrefix+dl.Consumer, msg); err != nil {
			return fmt.Errorf("replay dead letter %d to %s: %w", id, dl.Consumer, err)
		}
		if err := d.Ack(false); err != nil {
			return fmt.Errorf("remove replayed dead letter %d: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %d", bus.ErrDeadLetterNotFound, id)
}

// PurgeDeadLetters deletes every dead letter and reports how many there
// were.
func (b *Broker) PurgeDeadLetters(ctx context.Context) (uint64, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	n, err := ch.QueuePurge(QueueDLQ, false)
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", QueueDLQ, err)
	}
	return uint64(n), nil
}

// CaughtUp reports whether consumer's queue holds no event waiting to be
// delivered. RabbitMQ keeps no positions to compare (typ and subject are
// not used): an event delivered and not yet acknowledged counts as caught
// up.
func (b *Broker) CaughtUp(ctx context.Context, consumer, _, _ string) (bool, error) {
	ch, err := b.channel(ctx)
	if err != nil {
		return false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queuePrefix+consumer, true, false, false, false, nil)
	if err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
			return true, nil
		}
		return false, err
	}
	return q.Messages == 0, nil
}

// History is bus.ErrNoHistory: RabbitMQ's queues forget what they
// delivered.
func (b *Broker) History(context.Context, string, time.Time, int) ([]bus.Event, bool, error) {
	return nil, false, bus.ErrNoHistory
}

// Tail calls f with every event opts.Types selects (all when none) from
// the moment its queue is bound, through a queue of its own the broker
// deletes when it ends. RabbitMQ keeps no history, so opts.After is not
// honoured: the stream always starts now. seq counts the events tailed.
func (b *Broker) Tail(ctx context.Context, opts bus.TailOptions, f func(seq uint64, ev bus.Event) error) error {
	ch, err := b.channel(ctx)
	if err != nil {
		return err
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare a tail queue: %w", err)
	}
	keys := opts.Types
	if len(keys) == 0 {
		keys = []string{"#"}
	}
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, ExchangeEvents, false, nil); err != nil {
			return fmt.Errorf("bind the tail queue to %s: %w", k, err)
		}
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	if opts.Ready != nil {
		opts.Ready()
	}
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-msgs:
			if !ok {
				return errors.New("tail: the broker closed the channel")
			}
			ev, err := bus.Decode(header(d.Headers), d.Body)
			if err != nil {
				continue
			}
			seq++
			if err := f(seq, ev); err != nil {
				return err
			}
		}
	}
}
