package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// ErrNotConfirmed is the outcome of a publish the broker did not confirm:
// it refused it, or the connection dropped first. The outbox sends it
// again.
var ErrNotConfirmed = errors.New("RabbitMQ did not confirm the publish (refused, or the connection dropped first)")

// pending is a batch whose confirms are due.
type pending struct {
	confirms []*amqp.DeferredConfirmation
	errs     []error
}

// PublishAsync sends events in order on the publishing channel, without
// waiting for the broker's confirms; Wait collects them. Once one cannot
// be sent, the later ones are not sent either (bus.ErrEarlierUnsent), so a
// caller that re-sends from its first failure keeps each order's events in
// order.
func (b *Broker) PublishAsync(events []bus.Event) bus.Pending {
	p := &pending{confirms: make([]*amqp.DeferredConfirmation, len(events)), errs: make([]error, len(events))}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	var failed error
	for i, ev := range events {
		if failed != nil {
			p.errs[i] = bus.ErrEarlierUnsent
			continue
		}
		p.confirms[i], failed = b.send(ExchangeEvents, ev.Type, Publishing(ev))
		if failed != nil {
			p.errs[i] = fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, failed)
		}
	}
	return p
}

// Wait returns each event's outcome, or nil when the broker confirmed all.
func (p *pending) Wait(ctx context.Context) []error {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishAckTimeout)
	defer cancel()
	failed := false
	for i, dc := range p.confirms {
		if dc == nil {
			failed = true
			continue
		}
		ok, err := dc.WaitContext(ctx)
		switch {
		case err != nil:
			p.errs[i] = fmt.Errorf("%w: %v", ErrNotConfirmed, err)
		case !ok:
			p.errs[i] = ErrNotConfirmed
		}
		failed = failed || p.errs[i] != nil
	}
	if !failed {
		return nil
	}
	return p.errs
}

// send publishes msg on the publishing channel (opening it in confirm
// mode first if it has none, or it closed) and returns its confirmation.
// The caller holds pubMu.
func (b *Broker) send(exchange, key string, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	if b.pub == nil || b.pub.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), bus.PublishAckTimeout)
		ch, err := b.channel(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if err := ch.Confirm(false); err != nil {
			ch.Close()
			return nil, fmt.Errorf("confirm mode: %w", err)
		}
		b.pub = ch
	}
	return b.pub.PublishWithDeferredConfirm(exchange, key, false, false, msg)
}

// publish sends msg and waits for the broker's confirm.
func (b *Broker) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	b.pubMu.Lock()
	dc, err := b.send(exchange, key, msg)
	b.pubMu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, bus.PublishAckTimeout)
	defer cancel()
	ok, err := dc.WaitContext(ctx)
	if err == nil && !ok {
		err = ErrNotConfirmed
	}
	return err
}

// Publishing is ev as a persistent AMQP message: its CloudEvents
// attributes in headers, as in the NATS binding (ce-id, ce-type, ...), the
// id also as the message id, the data as the body.
func Publishing(ev bus.Event) amqp.Publishing {
	return amqp.Publishing{
		Headers:      table(ev.Msg().Header),
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    ev.ID,
		Type:         ev.Type,
		Timestamp:    ev.Time,
		Body:         ev.Data,
	}
}

// table is a NATS header as AMQP headers, without NATS's own.
func table(h nats.Header) amqp.Table {
	t := amqp.Table{}
	for k := range h {
		if k != jetstream.MsgIDHeader && !strings.HasPrefix(k, "Nats-") {
			t[k] = h.Get(k)
		}
	}
	return t
}

// header is AMQP headers as a NATS header: the string ones, which are all
// an event's attributes.
func header(t amqp.Table) nats.Header {
	h := nats.Header{}
	for k, v := range t {
		if s, ok := v.(string); ok {
			h[k] = []string{s}
		}
	}
	return h
}

// Changed tells every instance's OnChanged that the entity of kind with
// id changed (best effort, unconfirmed).
func (b *Broker) Changed(kind, id string) {
	if b.Healthy() != nil {
		return // no wait for the broker in the caller's path: long polls fall back on their timeout
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if _, err := b.send(ExchangeChanged, kind+"."+id, amqp.Publishing{}); err != nil {
		b.log.Debug("changed", "kind", kind, "id", id, "err", err)
	}
}

// OnChanged calls f with the id of every entity of kind that changes from
// now on, on any instance, through a queue of this connection's own that
// is made again when the connection comes back. stop ends it.
func (b *Broker) OnChanged(kind string, f func(id string)) (stop func(), err error) {
	prefix := kind + "."
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	go b.keep(ctx, "changes of "+kind, func(ctx context.Context, ch *amqp.Channel) error {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err == nil {
			err = ch.QueueBind(q.Name, prefix+"*", ExchangeChanged, false, nil)
		}
		var msgs <-chan amqp.Delivery
		if err == nil {
			msgs, err = ch.Consume(q.Name, "", true, true, false, false, nil)
		}
		select {
		case ready <- err:
		default:
		}
		if err != nil {
			return err
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case m, ok := <-msgs:
				if !ok {
					return errors.New("channel closed")
				}
				f(strings.TrimPrefix(m.RoutingKey, prefix))
			}
		}
	})
	if err := <-ready; err != nil {
		cancel()
		return nil, fmt.Errorf("listen to changes of %s: %w", kind, err)
	}
	return cancel, nil
}
