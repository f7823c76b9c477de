// Package bus is ordermesh's connection to NATS JetStream: the CloudEvents
// envelope, the EVENTS / DLQ / REPLAY streams, publishing (single and in
// asynchronous batches), durable competing consumers with retries and dead
// letters, and the dead-letter operations behind `ordermesh dlq`.
package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// DLQMaxAge is how long a dead letter is kept if nobody replays or
	// purges it.
	DLQMaxAge = 30 * 24 * time.Hour
	// DefaultDLQMaxBytes caps the DLQ's storage unless Config says
	// otherwise. A full DLQ refuses new dead letters rather than drop old
	// ones: their events stay in EVENTS and are redelivered a few times
	// more, then the broker stops (its MaxDeliver) and the failure is
	// logged with the event's stream sequence and counted
	// (ordermesh_consumer_broker_max_deliveries_total). So
	// ordermesh_dlq_bytes against ordermesh_dlq_max_bytes alerts at 80%.
	DefaultDLQMaxBytes = 1 << 30
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
	// DLQMaxBytes caps the DLQ's storage (0: DefaultDLQMaxBytes).
	DLQMaxBytes int64
	// Partitioned makes every consumer one durable consumer per partition
	// (see Partitions), each delivered to one instance at a time, the one
	// the broker pins (see PinnedTTL): the mode for several instances of a
	// service.
	Partitioned bool
	// ConsumerMemory keeps the durable consumers' state (what each has
	// acknowledged) in the brokers' memory, replicated like the streams,
	// instead of in files each broker rewrites up to 10 times a second per
	// consumer: 16% less broker CPU per order scaled out at 30 orders/s
	// (BENCHMARKS.md). The state survives any broker's crash while the
	// others keep a quorum; if every broker of the cluster stops at once,
	// it is lost and every consumer reads the stream again from its start
	// (the inbox drops what was handled, so nothing happens twice, but the
	// catch-up takes the time of re-reading up to EventsMaxAge of events).
	// Every instance must agree: the broker refuses to change it on an
	// existing consumer.
	ConsumerMemory bool
	// ConsumerReplicas, when set, is how many brokers keep each durable
	// consumer's state on the EVENTS stream (0: as many as the stream, so
	// any broker may die and the consumer goes on at once). 1 takes about
	// 30% off the brokers' CPU per order scaled out (BENCHMARKS.md) and
	// trades availability: while the broker that holds a consumer is down,
	// that consumer stops; if it is lost for good, its consumers must be
	// deleted, and each instance makes them again and reads the stream
	// from its start (the inbox drops what was handled). The REPLAY
	// stream's consumers always follow their stream (the broker requires
	// it of an interest stream).
	ConsumerReplicas int
	// Metrics, when set, receives the pipeline's metrics (see metrics.go).
	Metrics prometheus.Registerer
	// Logger receives consumer warnings. Nil means slog.Default().
	Logger *slog.Logger
	// Validate, when set, checks every received event's data against its
	// type's contract before any handler sees it. An event it refuses is
	// dead-lettered at once and changes nothing: consumers trust no
	// payload, whoever published it.
	Validate func(typ string, data []byte) error
	// Sources, when set, is the CloudEvents source each event type must
	// come from; an event of a listed type from another source is
	// dead-lettered before any handler sees it.
	Sources map[string]string
}

// Bus publishes events and runs consumers over one NATS connection.
type Bus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	log     *slog.Logger
	metrics *metrics // nil without Config.Metrics
	order   ordering // the events PublishAsync has in flight, per subject
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
			return nil, fmt.Errorf("connect to NATS at %s: %w (the broker refused the credentials: check --nats-user/--nats-password, --nats-creds, or the user:password in the URL)", RedactURLs(url), err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("connect to NATS at %s: %w (is the broker running and --nats right?)", RedactURLs(url), lastErr)
}

// RedactURLs is a comma-separated list of server URLs with each one's
// password replaced by xxxxx, fit for an error message or a log.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
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
	b := &Bus{nc: nc, js: js, cfg: cfg, log: log}
	if cfg.Metrics != nil {
		b.metrics = newMetrics(b, cfg.Metrics)
	}
	return b, nil
}

// As is b over nc, another connection (a service's own broker identity):
// same configuration and metrics, its own publishing and consumers.
func (b *Bus) As(nc *nats.Conn) (*Bus, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(PublishAckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Bus{nc: nc, js: js, cfg: b.cfg, log: b.log, metrics: b.metrics}, nil
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
		MaxAge:      DLQMaxAge,
		MaxBytes:    cmp.Or(b.cfg.DLQMaxBytes, DefaultDLQMaxBytes),
		Discard:     jetstream.DiscardNew,
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

// sameStream says whether the stream as it is (have) already has every
// setting ensureStream would give it (want).
func sameStream(have, want jetstream.StreamConfig) bool {
	unlimited := func(n int64) int64 { return max(n, 0) } // the broker says -1 for none
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.MaxAge == want.MaxAge &&
		unlimited(have.MaxBytes) == unlimited(want.MaxBytes) && have.Discard == want.Discard && have.Duplicates == want.Duplicates &&
		have.Replicas == want.Replicas && have.Description == want.Description && reflect.DeepEqual(have.Placement, want.Placement)
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
	if sameStream(have, cfg) {
		// Nothing to change: a service whose broker identity may not
		// change the streams (ordermesh setup does) starts all the same.
		return nil
	}
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	return nil
}
