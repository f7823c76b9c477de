package bus

import (
	"context"
	"fmt"
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

// PublishAsync sends events in order without waiting for the broker's
// acknowledgements; Wait on the result collects them. It lets a caller send
// the next batch while the acks of this one are still on their way.
func (b *Bus) PublishAsync(events []Event) *PendingBatch {
	p := &PendingBatch{events: events, futures: make([]jetstream.PubAckFuture, len(events))}
	for i, ev := range events {
		f, err := b.js.PublishMsgAsync(ev.Msg())
		if err != nil {
			p.fail(i, fmt.Errorf("publish %s %s: %w", ev.Type, ev.ID, err))
			continue
		}
		p.futures[i] = f
	}
	return p
}

// PendingBatch is a batch sent by PublishAsync whose acks are still due.
type PendingBatch struct {
	events  []Event
	futures []jetstream.PubAckFuture
	errs    []error
	// wait bounds Wait (PublishAckTimeout and a margin; tests shorten it).
	wait time.Duration
}

func (p *PendingBatch) fail(i int, err error) {
	if p.errs == nil {
		p.errs = make([]error, len(p.events))
	}
	p.errs[i] = err
}

// Wait waits for every acknowledgement and returns each event's outcome as
// PublishBatch does. An event whose ack has not come when ctx ends counts
// as failed (it may still be stored; a re-publish is de-duplicated).
//
// It waits at most PublishAckTimeout past the last publish, whatever ctx
// says: a future whose acknowledgement was lost (a leader change) fails
// instead of hanging its caller.
func (p *PendingBatch) Wait(ctx context.Context) (errs []error) {
	if p.wait == 0 {
		p.wait = PublishAckTimeout + time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	for i, f := range p.futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			p.fail(i, fmt.Errorf("publish %s %s: %w", p.events[i].Type, p.events[i].ID, err))
		case <-ctx.Done():
			p.fail(i, fmt.Errorf("publish %s %s: %w", p.events[i].Type, p.events[i].ID, ctx.Err()))
		}
	}
	return p.errs
}
