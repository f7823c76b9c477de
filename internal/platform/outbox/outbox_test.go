package outbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// items is the test's "state": one row per committed state change, naming
// the event committed with it.
var items = sqldb.Migrations{Component: "items", FS: fstest.MapFS{
	"sqlite/001_items.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL);\n")},
	"postgres/001_items.sql": {Data: []byte("-- +goose Up\nCREATE TABLE items (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL);\n")},
}}

var sets = []sqldb.Migrations{outbox.Migrations(), items}

var errRollback = errors.New("rolled back on purpose")

// change commits (or, with rollback, aborts) one state change with n events.
func change(ctx context.Context, db *sqldb.DB, o *outbox.Outbox, n int, rollback bool) ([]bus.Event, error) {
	typ := "item.added"
	if rollback {
		typ = "item.rolledback"
	}
	var evs []bus.Event
	for range n {
		ev, err := bus.NewEvent(typ, "outbox-test", "item", map[string]string{"k": "v"})
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, ev := range evs {
			if _, err := tx.Exec(ctx, "INSERT INTO items (event_id) VALUES (?)", ev.ID); err != nil {
				return err
			}
		}
		if err := o.Add(ctx, tx, evs...); err != nil {
			return err
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	if rollback && errors.Is(err, errRollback) {
		err = nil
	}
	return evs, err
}

func startRelay(t *testing.T, o *outbox.Outbox, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- outbox.NewRelay(o, cfg).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitDrained(t *testing.T, o *outbox.Outbox) {
	t.Helper()
	bustest.Eventually(t, 30*time.Second, "outbox drained", func() bool {
		n, err := o.Pending(context.Background())
		return err == nil && n == 0
	})
}

func committedEventIDs(t *testing.T, db *sqldb.DB) map[string]bool {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT event_id FROM items")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	return ids
}

// assertExactlyCommitted checks that EVENTS holds each committed event
// exactly once and nothing else.
func assertExactlyCommitted(t *testing.T, s *bustest.Server, committed map[string]bool) {
	t.Helper()
	counts := map[string]int{}
	for _, ev := range s.StreamEvents(t, bus.StreamEvents) {
		if ev.Type == "item.rolledback" || !committed[ev.ID] {
			t.Errorf("EVENTS holds %s %s, which was never committed", ev.Type, ev.ID)
		}
		counts[ev.ID]++
	}
	for id := range committed {
		if counts[id] != 1 {
			t.Errorf("committed event %s appears %d times in EVENTS, want exactly once", id, counts[id])
		}
	}
}

func TestRelay(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		s := bustest.Start(t)
		o := outbox.New(db)
		// A poll interval of an hour: only the commit hook can wake it in time.
		startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus, PollInterval: time.Hour})

		var want []string
		for i := range 20 {
			evs, err := change(ctx, db, o, 1+i%3, i%4 == 3)
			if err != nil {
				t.Fatal(err)
			}
			if i%4 != 3 {
				for _, ev := range evs {
					want = append(want, ev.ID)
				}
			}
		}
		waitDrained(t, o)
		got := s.StreamEvents(t, bus.StreamEvents)
		if len(got) != len(want) {
			t.Fatalf("EVENTS holds %d events, want the %d committed", len(got), len(want))
		}
		for i := range want {
			if got[i].ID != want[i] {
				t.Fatalf("event %d is %s, want %s: a single relay must publish in commit order", i, got[i].ID, want[i])
			}
		}
	})
}

// TestRelayKeepsCommitOrderUnderConcurrentWriters commits from many
// goroutines at once, so that commits share transactions (group commit on
// SQLite) and their rows reach the relay from many places, and checks that
// each committed event is in EVENTS once; on SQLite, in commit (id) order.
func TestRelayKeepsCommitOrderUnderConcurrentWriters(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		s := bustest.Start(t)
		o := outbox.New(db)
		startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus, PollInterval: time.Hour})
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					if _, err := change(ctx, db, o, 1+(w+i)%3, (w+i)%7 == 0); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		waitDrained(t, o)
		committed := committedEventIDs(t, db)
		bustest.Eventually(t, 30*time.Second, "every committed event in EVENTS", func() bool {
			return len(s.StreamEvents(t, bus.StreamEvents)) >= len(committed)
		})
		assertExactlyCommitted(t, s, committed)
		if db.Dialect() == sqldb.Postgres {
			return // concurrent PostgreSQL transactions commit out of id order
		}
		assertStreamInIDOrder(t, db, s)
	})
}

// countingPublisher counts how often each event is handed to the broker,
// which the broker's own de-duplication would otherwise hide.
type countingPublisher struct {
	pub    *bus.Bus
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingPublisher) PublishAsync(evs []bus.Event) bus.Pending {
	c.mu.Lock()
	for _, ev := range evs {
		c.counts[ev.ID]++
	}
	c.mu.Unlock()
	return c.pub.PublishAsync(evs)
}

var _ outbox.Publisher = (*countingPublisher)(nil)

func TestRelaysOnPostgresNeverPublishTwice(t *testing.T) {
	base := os.Getenv(sqldbtest.PostgresEnv)
	if base == "" {
		t.Skip(sqldbtest.PostgresEnv + " not set")
	}
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldbtest.PostgresSchema(t, base), sets...)
	s := bustest.Start(t)
	o := outbox.New(db)
	for i := 0; i < 500; i++ {
		if _, err := change(ctx, db, o, 4, false); err != nil {
			t.Fatal(err)
		}
	}
	counter := &countingPublisher{pub: s.Bus, counts: map[string]int{}}
	for range 3 {
		// Each relay is its own Outbox, as in three processes.
		startRelay(t, outbox.New(db), outbox.RelayConfig{Publisher: counter, BatchSize: 50, PollInterval: 10 * time.Millisecond})
	}
	waitDrained(t, o)
	committed := committedEventIDs(t, db)
	for id := range committed {
		if n := counter.counts[id]; n != 1 {
			t.Fatalf("event %s was published %d times by the three relays, want once", id, n)
		}
	}
	assertExactlyCommitted(t, s, committed)
	// Every row was committed before the relays started, so id order is
	// commit order, and the three relays together must keep it: a later
	// event of an order must never reach the broker first.
	assertStreamInIDOrder(t, db, s)
}

// assertStreamInIDOrder checks that EVENTS holds the outbox's events in
// the order of their row ids.
func assertStreamInIDOrder(t *testing.T, db *sqldb.DB, s *bustest.Server) {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT event_id FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var want []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	for i, ev := range s.StreamEvents(t, bus.StreamEvents) {
		if ev.ID != want[i] {
			t.Fatalf("event %d in EVENTS is %s, want %s: events must reach the broker in commit order", i, ev.ID, want[i])
		}
	}
}

// relayTenAndStop commits five changes of two events each, lets a relay
// publish them and stops it.
func relayTenAndStop(t *testing.T, db *sqldb.DB, o *outbox.Outbox, s *bustest.Server) {
	t.Helper()
	for range 5 {
		if _, err := change(context.Background(), db, o, 2, false); err != nil {
			t.Fatal(err)
		}
	}
	stop := startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus})
	waitDrained(t, o)
	stop()
}

func TestRelayPrunesSentRows(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		s := bustest.Start(t)
		o := outbox.New(db)
		relayTenAndStop(t, db, o, s)
		var rows int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox").Scan(&rows); err != nil || rows != 10 {
			t.Fatalf("outbox holds %d rows (err %v) before pruning, want the 10 sent", rows, err)
		}
		// Two hours later, with a one-hour retention, the sent rows go.
		later := func() time.Time { return time.Now().Add(2 * time.Hour) }
		startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus, Retention: time.Hour, Now: later})
		bustest.Eventually(t, 10*time.Second, "sent rows pruned", func() bool {
			err := db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox").Scan(&rows)
			return err == nil && rows == 0
		})
	})
}

// On SQLite rows go by event time (ids follow it), oldest first, and the
// prune stops at the first row young enough to keep.
func TestRelayPrunesOnlyRowsOlderThanTheRetention(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, sqldbtest.DSNs(t)["sqlite"], sets...)
	s := bustest.Start(t)
	o := outbox.New(db)
	for i := range 10 {
		ev, err := bus.NewEvent("item.added", "outbox-test", "item", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		if i < 4 {
			ev.Time = time.Now().Add(-2 * time.Hour)
		}
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return o.Add(ctx, tx, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	// Sent, and kept: the first relay's retention covers every row.
	stop := startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus, Retention: 24 * time.Hour})
	waitDrained(t, o)
	stop()
	var rows int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox").Scan(&rows); err != nil || rows != 10 {
		t.Fatalf("%d rows after a relay with 24h retention (err %v), want all 10", rows, err)
	}
	startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus, Retention: time.Hour})
	bustest.Eventually(t, 10*time.Second, "the 4 old rows pruned, the 6 young kept", func() bool {
		err := db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox").Scan(&rows)
		return err == nil && rows == 6
	})
}

func TestRelayResumesAfterWhatItSent(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		s := bustest.Start(t)
		o := outbox.New(db)
		relayTenAndStop(t, db, o, s)
		fresh, err := change(ctx, db, o, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		counter := &countingPublisher{pub: s.Bus, counts: map[string]int{}}
		startRelay(t, o, outbox.RelayConfig{Publisher: counter})
		waitDrained(t, o)
		counter.mu.Lock()
		defer counter.mu.Unlock()
		if len(counter.counts) != len(fresh) {
			t.Fatalf("the restarted relay published %d events, want only the %d committed since it stopped", len(counter.counts), len(fresh))
		}
		for _, ev := range fresh {
			if counter.counts[ev.ID] != 1 {
				t.Fatalf("event %s published %d times, want once", ev.ID, counter.counts[ev.ID])
			}
		}
		assertExactlyCommitted(t, s, committedEventIDs(t, db))
	})
}

// flakyPublisher sends the batches fail picks (by call number, from 1) to
// a broker that has no EVENTS stream, so they really fail, and the others
// to the real broker.
type flakyPublisher struct {
	broken, real *bus.Bus
	fail         func(call int) bool
	mu           sync.Mutex
	calls        int
}

func (f *flakyPublisher) PublishAsync(evs []bus.Event) bus.Pending {
	f.mu.Lock()
	f.calls++
	broken := f.fail(f.calls)
	f.mu.Unlock()
	if broken {
		return f.broken.PublishAsync(evs)
	}
	return f.real.PublishAsync(evs)
}

func TestRelayRetriesFailedPublishes(t *testing.T) {
	cases := map[string]func(call int) bool{
		"first two batches fail": func(call int) bool { return call <= 2 },
		// The second batch is usually in flight when the first fails; its
		// success must not count the first one's rows as sent.
		"only the first batch fails": func(call int) bool { return call == 1 },
	}
	for name, fail := range cases {
		t.Run(name, func(t *testing.T) {
			sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
				ctx := context.Background()
				s := bustest.Start(t)
				broken := bustest.Start(t)
				if err := broken.Bus.JetStream().DeleteStream(ctx, bus.StreamEvents); err != nil {
					t.Fatal(err)
				}
				o := outbox.New(db)
				for range 30 {
					if _, err := change(ctx, db, o, 3, false); err != nil {
						t.Fatal(err)
					}
				}
				flaky := &flakyPublisher{broken: broken.Bus, real: s.Bus, fail: fail}
				startRelay(t, o, outbox.RelayConfig{Publisher: flaky, BatchSize: 20, PollInterval: 20 * time.Millisecond})
				waitDrained(t, o)
				flaky.mu.Lock()
				calls := flaky.calls
				flaky.mu.Unlock()
				if calls <= 2 {
					t.Fatalf("relay made %d publish calls; the failures were not exercised", calls)
				}
				assertExactlyCommitted(t, s, committedEventIDs(t, db))
			})
		})
	}
}

const crashChildEnv = "ORDERMESH_OUTBOX_CRASH_CHILD"

// TestOutboxSurvivesKill starts a child process that commits state changes
// with their events (and rolls some back) while its relay publishes, kills
// it with SIGKILL at a random moment, restarts the relay on the same
// database, and checks that every committed event is in EVENTS exactly
// once and no rolled-back one is.
func TestOutboxSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for name, dsn := range sqldbtest.DSNs(t) {
		t.Run(name, func(t *testing.T) {
			s := bustest.Start(t)
			sqldbtest.Open(t, dsn, sets...) // migrate before the child starts
			for round := range 3 {
				target := 20 + rand.IntN(400)
				killChildAfter(t, dsn, s.ClientURL(), target)
				t.Logf("round %d: killed the child after %d commits", round, target)
			}
			db := sqldbtest.Open(t, dsn, sets...)
			o := outbox.New(db)
			pending, err := o.Pending(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d committed events were still unsent when the child died", pending)
			startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus})
			waitDrained(t, o)
			committed := committedEventIDs(t, db)
			if len(committed) == 0 {
				t.Fatal("the child committed nothing")
			}
			assertExactlyCommitted(t, s, committed)
		})
	}
}

func killChildAfter(t *testing.T, dsn, natsURL string, commits int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", "CHILD_DSN="+dsn, "CHILD_NATS="+natsURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		n, ok := strings.CutPrefix(lines.Text(), "COMMITTED ")
		if !ok {
			continue
		}
		if c, _ := strconv.Atoi(n); c >= commits {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			return
		}
	}
	cmd.Process.Kill()
	t.Fatalf("child exited before %d commits: %v", commits, lines.Err())
}

// TestCrashChild is the child of TestOutboxSurvivesKill: it commits changes
// forever with a relay running, until it is killed.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("only runs as the child of TestOutboxSurvivesKill")
	}
	ctx := context.Background()
	db, err := sqldb.Open(ctx, os.Getenv("CHILD_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Dial(ctx, os.Getenv("CHILD_NATS"), "crash-child")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := outbox.New(db)
	go outbox.NewRelay(o, outbox.RelayConfig{Publisher: b, BatchSize: 25}).Run(ctx)
	for i := 1; ; i++ {
		if _, err := change(ctx, db, o, 1+i%3, i%5 == 0); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("COMMITTED %d\n", i)
	}
}

// TestOldestUnsentShowsTheRelaysLag: rows nobody publishes age (what
// /readyz and the lag metric report); once a relay publishes them the lag
// is zero. WaitPublished returns only then.
func TestOldestUnsentShowsTheRelaysLag(t *testing.T) {
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		o := outbox.New(db)
		if age, err := o.OldestUnsent(ctx, time.Now()); err != nil || age != 0 {
			t.Fatalf("empty outbox: lag %s, %v", age, err)
		}
		if _, err := change(ctx, db, o, 2, false); err != nil {
			t.Fatal(err)
		}
		if age, err := o.OldestUnsent(ctx, time.Now().Add(time.Minute)); err != nil || age < time.Minute {
			t.Fatalf("unpublished rows a minute later: lag %s, %v; want at least 1m", age, err)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := o.WaitPublished(short); err == nil {
			t.Fatal("WaitPublished returned with no relay running")
		}
		s := bustest.Start(t)
		startRelay(t, o, outbox.RelayConfig{Publisher: s.Bus})
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := o.WaitPublished(wctx); err != nil {
			t.Fatalf("WaitPublished with a relay: %v", err)
		}
		if age, err := o.OldestUnsent(ctx, time.Now()); err != nil || age != 0 {
			t.Fatalf("after publishing: lag %s, %v", age, err)
		}
	})
}
