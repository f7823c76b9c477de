package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// changedPrefix is the core-NATS subject prefix of change signals.
const changedPrefix = "changed."

// Changed broadcasts, without persistence, that entity id of kind (e.g.
// "order") has just changed, so that requests waiting on it on any
// instance look again. A lost signal only delays a waiter until its next
// recheck.
func (b *Bus) Changed(kind, id string) {
	_ = b.nc.Publish(changedPrefix+kind+"."+id, nil)
}

// OnChanged calls f with the id of every entity of kind that changes from
// now on, on any instance (see Changed). f runs on the connection's
// goroutine and must not block. stop ends the subscription.
func (b *Bus) OnChanged(kind string, f func(id string)) (stop func(), err error) {
	prefix := changedPrefix + kind + "."
	sub, err := b.nc.Subscribe(prefix+"*", func(m *nats.Msg) {
		f(strings.TrimPrefix(m.Subject, prefix))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s*: %w", prefix, err)
	}
	return func() { sub.Unsubscribe() }, nil
}

// TailOptions say where Tail starts and what it keeps.
type TailOptions struct {
	After uint64   // the stream sequence to start after (0: the beginning)
	New   bool     // only events published from now on; After is ignored
	Types []string // only these event types (none: all); the broker filters
	// Ready, if set, is called once the consumer exists: every event
	// published after Ready returns will reach f.
	Ready func()
}

// Tail calls f with every event in EVENTS that opts select, in order, then
// with new ones as they arrive, until ctx ends or f fails. It reads through
// an ephemeral ordered consumer, so it needs no cleanup and never affects
// the durable consumers. Undecodable messages are skipped.
func (b *Bus) Tail(ctx context.Context, opts TailOptions, f func(seq uint64, ev Event) error) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case opts.New:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case opts.After > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.After+1
	}
	cfg.FilterSubjects = TypeSubjects(opts.Types, -1)
	cons, err := b.js.OrderedConsumer(ctx, StreamEvents, cfg)
	if err != nil {
		return fmt.Errorf("tail %s: %w", StreamEvents, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tail %s: %w", StreamEvents, err)
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	if opts.Ready != nil {
		opts.Ready()
	}
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tail %s: %w", StreamEvents, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		ev, err := Decode(msg.Headers(), msg.Data())
		if err != nil {
			continue
		}
		if err := f(md.Sequence.Stream, ev); err != nil {
			return err
		}
	}
}

// LastSequence returns the EVENTS stream sequence of the newest event of
// type typ in the partition of subject (so at least that of the newest
// about subject), or 0 when there is none.
func (b *Bus) LastSequence(ctx context.Context, typ, subject string) (uint64, error) {
	stream, err := b.js.Stream(ctx, StreamEvents)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, typeSubject(typ, subjectPartition(subject)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last %s: %w", typ, err)
	}
	return msg.Sequence, nil
}

// AckedThrough reports whether the durable consumer name has
// acknowledged every event of its types in EVENTS up to stream sequence
// seq in the partition of subject, whichever instance handled them.
func (b *Bus) AckedThrough(ctx context.Context, name, subject string, seq uint64) (bool, error) {
	if b.cfg.Partitioned {
		name = partitionName(name, PartitionOf(subject))
	}
	cons, err := b.js.Consumer(ctx, StreamEvents, name)
	if err != nil {
		return false, fmt.Errorf("consumer %s: %w", name, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("consumer %s: %w", name, err)
	}
	return info.AckFloor.Stream >= seq, nil
}

// History returns the events about subject stored in EVENTS since since,
// in order, reading at most scan messages of subject's partition (every
// event about one subject is in one partition). truncated reports that the
// scan stopped before the end of the stream. It reads through an
// ephemeral ordered consumer, like Tail.
func (b *Bus) History(ctx context.Context, subject string, since time.Time, scan int) (evs []Event, truncated bool, err error) {
	stream, err := b.js.Stream(ctx, StreamEvents)
	if err != nil {
		return nil, false, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	last := info.State.LastSeq
	if last == 0 || info.State.Msgs == 0 {
		return nil, false, nil
	}
	// Event types are two tokens (order.placed): events.<a>.<b>.<partition>.
	filter := SubjectPrefix + "*.*." + strconv.Itoa(subjectPartition(subject))
	cons, err := b.js.OrderedConsumer(ctx, StreamEvents, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since, FilterSubjects: []string{filter},
	})
	if err != nil {
		return nil, false, fmt.Errorf("history of %s: %w", subject, err)
	}
	// Nothing of the partition may follow since: ask how many are pending.
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("history of %s: %w", subject, err)
	}
	remaining := ci.NumPending
	it, err := cons.Messages()
	if err != nil {
		return nil, false, fmt.Errorf("history of %s: %w", subject, err)
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	for n := 0; remaining > 0; n++ {
		if n == scan {
			return evs, true, nil
		}
		msg, err := it.Next()
		if err != nil {
			return evs, false, fmt.Errorf("history of %s: %w", subject, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		remaining = md.NumPending
		if ev, err := Decode(msg.Headers(), msg.Data()); err == nil && ev.Subject == subject {
			evs = append(evs, ev)
		}
		if md.Sequence.Stream >= last {
			break
		}
	}
	return evs, false, nil
}
