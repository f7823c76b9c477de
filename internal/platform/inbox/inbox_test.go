package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

var counters = sqldb.Migrations{Component: "counters", FS: fstest.MapFS{
	"sqlite/001_counters.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);\n")},
	"postgres/001_counters.sql": {Data: []byte("-- +goose Up\nCREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);\n")},
}}

var sets = []sqldb.Migrations{inbox.Migrations(), counters}

// increment is a state change that is wrong if applied twice.
func increment(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
	_, err := tx.Exec(ctx, "INSERT INTO counters (name, n) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = counters.n + 1", ev.Subject)
	return err
}

func counter(t *testing.T, db *sqldb.DB, name string) int {
	t.Helper()
	var n int
	err := db.QueryRow(context.Background(), "SELECT n FROM counters WHERE name = ?", name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSameEventThreeTimesChangesStateOnce delivers one event three times
// through the broker (as after a redelivery past the broker's duplicate
// window) and checks that the state changed once and all three were acked.
func TestSameEventThreeTimesChangesStateOnce(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		s := bustest.Start(t)
		c, err := s.Bus.Consume(ctx, bus.ConsumerConfig{Name: "inbox-test", Types: []string{"thing.happened"}},
			inbox.Handler(db, "inbox-test", increment))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()

		ev, err := bus.NewEvent("thing.happened", "test", "counter-a", map[string]int{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			msg := ev.Msg()
			msg.Header.Set(jetstream.MsgIDHeader, ev.ID+"-copy-"+string(rune('0'+i))) // get past broker dedup
			if _, err := s.Bus.JetStream().PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		cons, err := s.Bus.JetStream().Consumer(ctx, bus.StreamEvents, "inbox-test")
		if err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, 10*time.Second, "all three deliveries acknowledged", func() bool {
			info, err := cons.Info(ctx)
			return err == nil && info.AckFloor.Stream == 3 && info.NumAckPending == 0
		})
		if got := counter(t, db, "counter-a"); got != 1 {
			t.Fatalf("counter = %d after three deliveries of one event, want 1", got)
		}
	})
}

// TestFailedHandlerIsNotMarkedSeen checks that a rolled-back handler leaves
// no inbox record, so the retry really runs.
func TestFailedHandlerIsNotMarkedSeen(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		ev, err := bus.NewEvent("thing.happened", "test", "counter-b", map[string]int{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		fail := true
		h := inbox.Handler(db, "inbox-test", func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
			if err := increment(ctx, tx, ev); err != nil {
				return err
			}
			if fail {
				return errors.New("transient")
			}
			return nil
		})
		if err := h(ctx, ev); err == nil {
			t.Fatal("handler error was swallowed")
		}
		if got := counter(t, db, "counter-b"); got != 0 {
			t.Fatalf("counter = %d after a failed handler, want 0 (rolled back)", got)
		}
		fail = false
		for range 2 {
			if err := h(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if got := counter(t, db, "counter-b"); got != 1 {
			t.Fatalf("counter = %d after retry and duplicate, want 1", got)
		}
	})
}

// TestBatchHandlerIsolatesFailures handles a batch where one event fails:
// the others commit, the failing one changes nothing and reports its error,
// and a second delivery of the batch is absorbed as duplicates.
func TestBatchHandlerIsolatesFailures(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		var evs []bus.Event
		for _, name := range []string{"c1", "bad", "c2", "c1"} {
			ev, err := bus.NewEvent("thing.happened", "test", name, map[string]int{})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		errBad := errors.New("bad counter")
		h := inbox.BatchHandler(db, "batch-test", func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
			if err := increment(ctx, tx, ev); err != nil {
				return err
			}
			if ev.Subject == "bad" {
				return errBad
			}
			return nil
		})
		errs := h(ctx, evs)
		if len(errs) != 4 || errs[0] != nil || !errors.Is(errs[1], errBad) || errs[2] != nil || errs[3] != nil {
			t.Fatalf("errs = %v, want only the second event to fail", errs)
		}
		if c1, bad, c2 := counter(t, db, "c1"), counter(t, db, "bad"), counter(t, db, "c2"); c1 != 2 || bad != 0 || c2 != 1 {
			t.Fatalf("counters c1=%d bad=%d c2=%d, want 2, 0, 1", c1, bad, c2)
		}
		// Redelivery of the good ones: duplicates, nothing changes.
		if errs := h(ctx, []bus.Event{evs[0], evs[2], evs[3]}); errs != nil {
			t.Fatalf("redelivery errs = %v", errs)
		}
		if c1, c2 := counter(t, db, "c1"), counter(t, db, "c2"); c1 != 2 || c2 != 1 {
			t.Fatalf("after redelivery c1=%d c2=%d, want 2, 1", c1, c2)
		}
	})
}

// TestBatchHandlerIsolatesAFailedDeferredWrite: a write queued with
// Tx.Defer fails at the batch's commit on PostgreSQL, not in its handler;
// the batch is run again event by event, so only that event fails.
func TestBatchHandlerIsolatesAFailedDeferredWrite(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		var evs []bus.Event
		for _, name := range []string{"c1", "c2", "bad"} { // last: its writes go with the commit
			ev, err := bus.NewEvent("thing.happened", "test", name, map[string]int{})
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		h := inbox.BatchHandler(db, "defer-test", func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
			if err := increment(ctx, tx, ev); err != nil {
				return err
			}
			if ev.Subject != "bad" {
				return nil
			}
			const twice = "INSERT INTO counters (name, n) VALUES ('once', 1)"
			if err := tx.Defer(ctx, twice); err != nil {
				return err
			}
			return tx.Defer(ctx, twice) // a duplicate key
		})
		errs := h(ctx, evs)
		if len(errs) != 3 || errs[0] != nil || errs[1] != nil || errs[2] == nil {
			t.Fatalf("errs = %v, want only the last event to fail", errs)
		}
		if c1, bad, c2, once := counter(t, db, "c1"), counter(t, db, "bad"), counter(t, db, "c2"), counter(t, db, "once"); c1 != 1 || bad != 0 || c2 != 1 || once != 0 {
			t.Fatalf("counters c1=%d bad=%d c2=%d once=%d, want 1, 0, 1, 0", c1, bad, c2, once)
		}
	})
}

// TestConsumeBatchDeadLettersOnlyTheBadEvent runs BatchHandler behind a
// real consumer: one permanently rejected event among many lands in DLQ,
// every other event changes state exactly once.
func TestConsumeBatchDeadLettersOnlyTheBadEvent(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/batch.db", sets...)
	s := bustest.Start(t)
	var evs []bus.Event
	for i := range 200 {
		name := "good"
		if i == 77 {
			name = "poison"
		}
		ev, err := bus.NewEvent("thing.happened", "test", name, map[string]int{})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if errs := s.Bus.PublishBatch(ctx, evs); errs != nil {
		t.Fatal(errs)
	}
	c, err := s.Bus.ConsumeBatch(ctx, bus.ConsumerConfig{Name: "batch-test", Types: []string{"thing.happened"}},
		inbox.BatchHandler(db, "batch-test", func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
			if ev.Subject == "poison" {
				return bus.Permanent(errors.New("poisoned"))
			}
			return increment(ctx, tx, ev)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	bustest.Eventually(t, 10*time.Second, "199 events applied", func() bool { return counter(t, db, "good") == 199 })
	var dls []bus.DeadLetter
	bustest.Eventually(t, 10*time.Second, "one dead letter", func() bool {
		dls, err = s.Bus.DeadLetters(ctx)
		return err == nil && len(dls) == 1
	})
	if dls[0].EventID != evs[77].ID || dls[0].Error != "permanent: poisoned" {
		t.Fatalf("dead letter = %+v", dls[0])
	}
	if got := counter(t, db, "poison"); got != 0 {
		t.Fatalf("poison counter = %d, want 0", got)
	}
}

func TestPruneKeepsRecentRecords(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		old := time.Now().Add(-10 * 24 * time.Hour).UnixMicro()
		if _, err := db.Exec(ctx, "INSERT INTO inbox (consumer, event_id, received_at_us) VALUES ('c', 'old', ?)", old); err != nil {
			t.Fatal(err)
		}
		err := db.InTx(ctx, func(tx *sqldb.Tx) error { _, err := inbox.Seen(ctx, tx, "c", "recent"); return err })
		if err != nil {
			t.Fatal(err)
		}
		n, err := inbox.Prune(ctx, db, 8*24*time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want the one old record", n, err)
		}
		err = db.InTx(ctx, func(tx *sqldb.Tx) error {
			seen, err := inbox.Seen(ctx, tx, "c", "recent")
			if err == nil && !seen {
				t.Error("the recent record was pruned")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
