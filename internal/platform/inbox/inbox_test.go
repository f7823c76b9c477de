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
