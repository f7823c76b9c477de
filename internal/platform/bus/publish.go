package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Publish publishes one event and waits for the broker's acknowledgement.
func (b *Bus) Publish(ctx context.Context, ev Event) error {
	if _, err := b.js.PublishMsg(ctx, ev.Msg()); err != nil {
		return fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, err)
	}
	return nil
}

// PublishBatch publishes events asynchronously, in order, and waits for
// every acknowledgement. errs[i] is the outcome of events[i]; errs is nil
// when all succeeded. A duplicate (same id inside the broker's window)
// counts as success: the event is already stored.
func (b *Bus) PublishBatch(ctx context.Context, events []Event) (errs []error) {
	return b.PublishAsync(events).Wait(ctx)
}

// ErrEarlierUnsent is the outcome of an event that was not sent because an
// earlier event about its subject, still unacknowledged when it was to be
// sent, then failed: sending it would let the broker store it first.
var ErrEarlierUnsent = errors.New("not sent: an earlier event about the same subject failed")

// PublishAsync sends events in order without waiting for the broker's
// acknowledgements; Wait on the result collects them. It lets a caller send
// the next batch while the acks of this one are still on their way.
//
// The events about one subject (an order) are stored in the order given,
// within a call and across calls on this Bus: an event whose subject has
// an earlier event in flight is sent only once that one is acknowledged,
// and fails with ErrEarlierUnsent if it was not. Events about different
// subjects go out at once. A caller that re-sends from its first failure
// (the outbox relay) therefore never has the broker store a later event of
// an order before an earlier one, whatever a failover loses.
func (b *Bus) PublishAsync(events []Event) Pending {
	p := &PendingBatch{bus: b, events: events, futures: make([]jetstream.PubAckFuture, len(events)),
		links: make([]*link, len(events)), after: make([]*link, len(events)), done: make(chan struct{})}
	b.order.mu.Lock()
	if b.order.last == nil {
		b.order.last = map[string]*link{}
	}
	for i, ev := range events {
		l := &link{subject: ev.Subject, settled: make(chan struct{})}
		if prev := b.order.last[ev.Subject]; prev != nil && !prev.isSettled() {
			p.after[i] = prev
		}
		b.order.last[ev.Subject], p.links[i] = l, l
	}
	b.order.mu.Unlock()
	for i := range events {
		if p.after[i] == nil {
			p.send(i)
		}
	}
	go p.collect()
	return p
}

// ordering is a Bus's record, per subject, of the last event handed to
// PublishAsync, while it is unsettled.
type ordering struct {
	mu   sync.Mutex
	last map[string]*link
}

// link is one event's place in its subject's order.
type link struct {
	subject string
	settled chan struct{} // closed once err is final
	err     error
}

func (l *link) isSettled() bool {
	select {
	case <-l.settled:
		return true
	default:
		return false
	}
}

// PendingBatch is a batch sent by PublishAsync whose acks are still due.
type PendingBatch struct {
	bus     *Bus
	events  []Event
	futures []jetstream.PubAckFuture
	links   []*link
	after   []*link // the earlier event each waits for (nil: sent at once)
	sendErr []error // a send's own failure, before any future
	done    chan struct{}
	// wait bounds each wait for an acknowledgement (PublishAckTimeout and
	// a margin; tests shorten it).
	wait time.Duration
}

// send publishes event i.
func (p *PendingBatch) send(i int) {
	ev := p.events[i]
	f, err := p.bus.js.PublishMsgAsync(ev.Msg())
	if err != nil {
		if p.sendErr == nil {
			p.sendErr = make([]error, len(p.events))
		}
		p.sendErr[i] = fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, err)
		return
	}
	p.futures[i] = f
}

// collect settles every event of the batch in order: it waits for each
// acknowledgement, and sends each event that waited for an earlier one of
// its subject once that one is acknowledged.
func (p *PendingBatch) collect() {
	defer close(p.done)
	if p.wait == 0 {
		p.wait = PublishAckTimeout + time.Second
	}
	for i, ev := range p.events {
		if prev := p.after[i]; prev != nil {
			select {
			case <-prev.settled:
			case <-time.After(p.wait):
			}
			if !prev.isSettled() || prev.err != nil {
				p.settle(i, fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, ErrEarlierUnsent))
				continue
			}
			p.send(i)
		}
		if p.sendErr != nil && p.sendErr[i] != nil {
			p.settle(i, p.sendErr[i])
			continue
		}
		p.settle(i, p.ack(i))
	}
}

// ack waits for event i's acknowledgement, at most p.wait: a future whose
// acknowledgement was lost (a leader change) fails instead of hanging.
func (p *PendingBatch) ack(i int) error {
	ev, f := p.events[i], p.futures[i]
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, err)
	case <-time.After(p.wait):
		return fmt.Errorf("publish %s %s: no acknowledgement within %s", ev.Type, ev.ID, p.wait)
	}
}

// settle records event i's outcome and lets the events waiting for it go.
func (p *PendingBatch) settle(i int, err error) {
	l := p.links[i]
	l.err = err
	close(l.settled)
	if p.bus == nil {
		return
	}
	o := &p.bus.order
	o.mu.Lock()
	if o.last[l.subject] == l {
		delete(o.last, l.subject) // nothing about it is in flight any more
	}
	o.mu.Unlock()
}

// Wait waits for every acknowledgement and returns each event's outcome as
// PublishBatch does. An event whose outcome is not known when ctx ends
// counts as failed (it may still be stored; a re-publish is de-duplicated).
// Each acknowledgement is waited for at most PublishAckTimeout past its
// publish, whatever ctx says.
func (p *PendingBatch) Wait(ctx context.Context) (errs []error) {
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	for i, l := range p.links {
		err := ctx.Err()
		if l.isSettled() {
			err = l.err
		}
		if err != nil {
			if errs == nil {
				errs = make([]error, len(p.links))
			}
			errs[i] = err
		}
	}
	return errs
}
