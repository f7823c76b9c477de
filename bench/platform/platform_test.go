// Package platform benchmarks ordermesh's reliability mechanisms beside the
// raw JetStream rates of the same embedded server, in one run:
//
//	go test -run '^$' -bench . -benchtime 40000x -count 3 ./bench/platform
//
// Each benchmark reports msgs/s and the process's CPU µs per message;
// BENCHMARKS.md compares the outbox to raw publish and the consumer to raw
// consume+ack, and adds up the CPU an order's events cost.
package platform

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// payload is 256 bytes of JSON, the message size of every benchmark here.
var payload = func() []byte {
	b := make([]byte, 256)
	copy(b, `{"pad":"`)
	for i := 8; i < 254; i++ {
		b[i] = 'a' + byte(i%26)
	}
	copy(b[254:], `"}`)
	return b
}()

// timer marks the start of a benchmark's timed part, in wall-clock and in
// the CPU time of the whole process (broker, database and client alike).
type timer struct {
	wall time.Time
	cpu  time.Duration
}

func startTimer(b *testing.B) timer {
	b.ResetTimer()
	return timer{wall: time.Now(), cpu: processCPU()}
}

// report adds msgs/s and the process's CPU µs per message: the second is
// what a pipeline doing this work on the same machine pays per message,
// however many cores the benchmark kept busy.
func (t timer) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/time.Since(t.wall).Seconds(), "msgs/s")
	b.ReportMetric(float64((processCPU()-t.cpu).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newEvents(b *testing.B, n int) []bus.Event {
	evs := make([]bus.Event, n)
	for i := range evs {
		ev, err := bus.NewEvent("bench.happened", "bench", fmt.Sprintf("order-%d", i%1000), nil)
		if err != nil {
			b.Fatal(err)
		}
		ev.Data = payload
		evs[i] = ev
	}
	return evs
}

// BenchmarkRawPublishAsync is JetStream's own limit: 256-byte messages
// published asynchronously to the file-backed EVENTS stream.
func BenchmarkRawPublishAsync(b *testing.B) {
	msgs := make([]*nats.Msg, b.N)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: "events.bench.raw", Data: payload}
	}
	benchPublishAsync(b, msgs)
}

// BenchmarkRawPublishAsyncCloudEvents is the same with the messages the
// outbox sends: 256-byte data plus the CloudEvents headers and Nats-Msg-Id
// (which the broker de-duplicates on).
func BenchmarkRawPublishAsyncCloudEvents(b *testing.B) {
	evs := newEvents(b, b.N)
	msgs := make([]*nats.Msg, b.N)
	for i := range evs {
		msgs[i] = evs[i].Msg()
	}
	benchPublishAsync(b, msgs)
}

func benchPublishAsync(b *testing.B, msgs []*nats.Msg) {
	s := bustest.Start(b)
	js := s.Bus.JetStream()
	t := startTimer(b)
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish acks did not arrive")
	}
	t.report(b)
}

// BenchmarkOutboxRelay is the relay alone: the rows are committed before
// the clock starts; it stops when the relay has published and marked all.
func BenchmarkOutboxRelay(b *testing.B) {
	s := bustest.Start(b)
	db := sqldbtest.Open(b, "sqlite:"+b.TempDir()+"/bench.db", outbox.Migrations())
	o := outbox.New(db)
	evs := newEvents(b, b.N)
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < len(evs); i += 100 {
		batch := evs[i:min(i+100, len(evs))]
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return o.Add(ctx, tx, batch...) }); err != nil {
			b.Fatal(err)
		}
	}
	t := startTimer(b)
	relayDone := make(chan error, 1)
	go func() { relayDone <- outbox.NewRelay(o, withPublisher(benchRelay, s.Bus)).Run(ctx) }()
	waitDrained(b, o)
	t.report(b)
	b.StopTimer()
	cancel()
	<-relayDone
}

// waitDrained waits until every committed row is in the broker. It reads
// the relay's mark (one row, every 10 ms), not a count of the rows left,
// which grows with the backlog and, polled, competed with the relay: runs
// measured 10,000 events/s where others measured 72,000.
func waitDrained(b *testing.B, o *outbox.Outbox) {
	if err := o.WaitPublished(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// benchRelay is the relay's configuration in the benchmarks: its mark is
// saved every 5 ms rather than 100 ms, so that waitDrained sees the end
// of a run when it happens. Publishing is unchanged.
var benchRelay = outbox.RelayConfig{SaveEvery: 5 * time.Millisecond}

// BenchmarkOutbox is events committed → published → acknowledged: a writer
// commits transactions of 10 events into SQLite while the relay publishes
// them; the clock stops when the outbox is drained.
func BenchmarkOutbox(b *testing.B) {
	s := bustest.Start(b)
	db := sqldbtest.Open(b, "sqlite:"+b.TempDir()+"/bench.db", outbox.Migrations())
	o := outbox.New(db)
	evs := newEvents(b, b.N)
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- outbox.NewRelay(o, withPublisher(benchRelay, s.Bus)).Run(ctx) }()
	t := startTimer(b)
	for i := 0; i < len(evs); i += 10 {
		batch := evs[i:min(i+10, len(evs))]
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return o.Add(ctx, tx, batch...) }); err != nil {
			b.Fatal(err)
		}
	}
	waitDrained(b, o)
	t.report(b)
	b.StopTimer()
	cancel()
	<-relayDone
}

func prefill(b *testing.B, s *bustest.Server, evs []bus.Event) {
	for i := 0; i < len(evs); i += 1000 {
		if errs := s.Bus.PublishBatch(context.Background(), evs[i:min(i+1000, len(evs))]); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkRawConsumeAck is JetStream's consume limit: a durable pull
// consumer receiving the prefilled messages and acking each one.
func BenchmarkRawConsumeAck(b *testing.B) { benchRawConsume(b, jetstream.AckExplicitPolicy, 1) }

// BenchmarkRawConsumeAckAll is the same with one ack per 64 messages under
// AckAll (the fast-path issue's lever 4, "one ack message per delivery"):
// what acknowledging a batch at once could save at most.
func BenchmarkRawConsumeAckAll(b *testing.B) { benchRawConsume(b, jetstream.AckAllPolicy, 64) }

func benchRawConsume(b *testing.B, policy jetstream.AckPolicy, every int64) {
	s := bustest.Start(b)
	prefill(b, s, newEvents(b, b.N))
	ctx := context.Background()
	cons, err := s.Bus.JetStream().CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: policy, MaxAckPending: 4096,
	})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	t := startTimer(b)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		k := n.Add(1)
		if k%every == 0 || k == int64(b.N) {
			msg.Ack()
		}
		if k == int64(b.N) {
			close(done)
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		b.Fatal(err)
	}
	<-done
	t.report(b)
	b.StopTimer()
	cc.Stop()
}

var state = sqldb.Migrations{Component: "bench", FS: fstest.MapFS{
	"sqlite/001_state.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE state (order_id TEXT PRIMARY KEY, n INTEGER NOT NULL);\n")},
	"postgres/001_state.sql": {Data: []byte("-- +goose Up\nCREATE TABLE state (order_id TEXT PRIMARY KEY, n INTEGER NOT NULL);\n")},
}}

// BenchmarkConsumer is the full consumer path per event: decode the
// CloudEvent, open a SQLite transaction, record it in the inbox, apply a
// state change, commit, ack.
func BenchmarkConsumer(b *testing.B) {
	s := bustest.Start(b)
	prefill(b, s, newEvents(b, b.N))
	db := sqldbtest.Open(b, "sqlite:"+b.TempDir()+"/bench.db", inbox.Migrations(), state)
	var n, calls atomic.Int64
	done := make(chan struct{})
	h := inbox.BatchHandler(db, "bench", func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
		_, err := tx.Exec(ctx, "INSERT INTO state (order_id, n) VALUES (?, 1) ON CONFLICT (order_id) DO UPDATE SET n = state.n + 1", ev.Subject)
		return err
	})
	t := startTimer(b)
	c, err := s.Bus.ConsumeBatch(context.Background(), bus.ConsumerConfig{Name: "bench", Types: []string{"bench.happened"}},
		func(ctx context.Context, evs []bus.Event) []error {
			if errs := h(ctx, evs); errs != nil {
				return errs // retried; the count below only moves on success
			}
			calls.Add(1)
			if n.Add(int64(len(evs))) == int64(b.N) {
				close(done)
			}
			return nil
		})
	if err != nil {
		b.Fatal(err)
	}
	<-done
	t.report(b)
	b.ReportMetric(float64(b.N)/float64(calls.Load()), "events/tx")
	b.StopTimer()
	c.Stop()
}

func withPublisher(cfg outbox.RelayConfig, p *bus.Bus) outbox.RelayConfig {
	cfg.Publisher = p
	return cfg
}
