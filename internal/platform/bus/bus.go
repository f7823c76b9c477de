// Package bus is ordermesh's connection to NATS JetStream: the CloudEvents
// envelope, the EVENTS / DLQ / REPLAY streams, publishing (single and in
// asynchronous batches), durable competing consumers with retries and dead
// letters, and the dead-letter operations behind `ordermesh dlq`.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Stream names and their subjects.
const (
	// StreamEvents holds every domain event (events.>), limits retention, 7
	// days, so a new consumer can replay history.
	StreamEvents = "EVENTS"
	// StreamDLQ holds dead letters (dlq.<consumer>.<type>) until purged.
	StreamDLQ = "DLQ"
	// StreamReplay is a work queue of dead letters sent back to one consumer
	// (replay.<consumer>.<type>); a message leaves it once that consumer
	// acknowledges it.
	StreamReplay = "REPLAY"

	// EventsMaxAge is how long EVENTS keeps history.
	EventsMaxAge = 7 * 24 * time.Hour
	// DuplicateWindow is how long the broker remembers Nats-Msg-Id values.
	DuplicateWindow = 2 * time.Minute
	// PublishAckTimeout is the longest a publish waits for the broker's
	// acknowledgement before it counts as failed (and is retried).
	PublishAckTimeout = 5 * time.Second
)

// Config configures a Bus.
type Config struct {
	// Replicas is the replica count of the streams (1 embedded, 3 on a
	// clustered broker). Zero means what the streams have, or 1 for new
	// ones. A stream never gets fewer replicas than it has: an instance
	// started without the flag cannot turn a cluster's R3 streams into R1.
	Replicas int
	// Placement, when set, places the streams on a cluster or on servers
	// with tags.
	Placement *jetstream.Placement
	// MaxBytes caps EVENTS' storage (0: no cap; the oldest events go
	// first once it is reached).
	MaxBytes int64
	// Partitioned makes every consumer one durable consumer per partition
	// (see Partitions), each consumed by one instance at a time under a
	// lease: the mode for several instances of a service. Instance names
	// this process among them (default: a random id).
	Partitioned bool
	Instance    string
	// Metrics, when set, receives the pipeline's metrics (see metrics.go).
	Metrics prometheus.Registerer
	// Logger receives consumer warnings. Nil means slog.Default().
	Logger *slog.Logger
	// Validate, when set, checks every received event's data against its
	// type's contract before any handler sees it. An event it refuses is
	// dead-lettered at once and changes nothing: consumers trust no
	// payload, whoever published it.
	Validate func(typ string, data []byte) error
}

// Bus publishes events and runs consumers over one NATS connection.
type Bus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	log     *slog.Logger
	metrics *metrics // nil without Config.Metrics
}

// Dial connects to an external NATS server at url, retrying the initial
// connection for a while and reconnecting forever afterwards.
// opts add credentials and TLS (see nats.UserCredentials, nats.UserInfo,
// nats.RootCAs, nats.ClientCert).
func Dial(ctx context.Context, url, name string, opts ...nats.Option) (*nats.Conn, error) {
	if url == "" {
		return nil, errors.New("no NATS url: pass --nats nats://HOST:4222 (or start `ordermesh run --nats-listen 127.0.0.1:4222`)")
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}, opts...)...)
		if err == nil {
			return nc, nil
		}
		lastErr = err
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "Authorization Violation") {
			return nil, fmt.Errorf("connect to NATS at %s: %w (the broker refused the credentials: check --nats-user/--nats-password, --nats-creds, or the user:password in the URL)", url, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("connect to NATS at %s: %w (is the broker running and --nats right?)", url, lastErr)
}

// New wraps an open connection.
func New(nc *nats.Conn, cfg Config) (*Bus, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Every asynchronous publish gets an answer within PublishAckTimeout:
	// an acknowledgement lost with a stream leader that died becomes an
	// error to retry (the broker drops a re-publish by Nats-Msg-Id), never
	// a wait without end.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.Instance == "" {
		cfg.Instance = nuid.Next()
	}
	b := &Bus{nc: nc, js: js, cfg: cfg, log: log}
	if cfg.Metrics != nil {
		b.metrics = newMetrics(b, cfg.Metrics)
	}
	return b, nil
}

// Conn is the underlying NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the underlying JetStream context, for tools and tests.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// EnsureStreams creates or updates the EVENTS, DLQ and REPLAY streams. It is
// idempotent and safe to call from every instance at start. While the
// broker cannot place a stream yet (a cluster still forming, too few
// servers up), it retries with backoff and says so in the log, until ctx
// ends.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	return b.retry(ctx, "streams not ready; retrying (is the JetStream cluster up and are there enough servers for the replicas?)", b.ensureStreams)
}

// retry runs attempt until it succeeds or ctx ends, with a backoff from
// 250ms to 5s and a warning (say) per failure. Each attempt has a deadline
// of its own: a request to a cluster without a JetStream leader yet gets
// no answer at all.
func (b *Bus) retry(ctx context.Context, say string, attempt func(ctx context.Context) error, logArgs ...any) error {
	wait := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := attempt(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		b.log.Warn(say, append(logArgs, "err", err, "retry_in", wait)...)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (b *Bus) ensureStreams(ctx context.Context) error {
	streams := []jetstream.StreamConfig{{
		Name:        StreamEvents,
		Description: "ordermesh domain events (CloudEvents, binary mode)",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      EventsMaxAge,
		Duplicates:  DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	}, {
		Name:        StreamDLQ,
		Description: "ordermesh dead letters: events a consumer could not process",
		Subjects:    []string{dlqPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	}, {
		Name:        StreamReplay,
		Description: "ordermesh dead letters being replayed to one consumer",
		Subjects:    []string{replayPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      EventsMaxAge,
		Duplicates:  DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	}}
	streams[0].MaxBytes = b.cfg.MaxBytes
	for _, cfg := range streams {
		cfg.Placement = b.cfg.Placement
		if err := b.ensureStream(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

// ensureStream creates cfg's stream or updates it, keeping the replicas
// it has when more than asked for, and the placement when none is asked.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	existing, err := b.js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg.Replicas = max(cfg.Replicas, 1)
		if _, err := b.js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s with %d replicas: %w", cfg.Name, cfg.Replicas, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	have := existing.CachedInfo().Config
	if cfg.Replicas < have.Replicas {
		if cfg.Replicas > 0 {
			b.log.Warn("keeping the stream's replicas: another instance asked for more", "stream", cfg.Name, "asked", cfg.Replicas, "has", have.Replicas)
		}
		cfg.Replicas = have.Replicas
	}
	if cfg.Placement == nil {
		cfg.Placement = have.Placement
	}
	if cfg.MaxBytes == 0 && cfg.Name == StreamEvents {
		cfg.MaxBytes = have.MaxBytes // a cap is lifted only by setting one
	}
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	return nil
}

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
	msg, err := stream.GetLastMsgForSubject(ctx, TypeSubjects([]string{typ}, PartitionOf(subject))[0])
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
	filter := SubjectPrefix + "*.*." + strconv.Itoa(PartitionOf(subject))
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
