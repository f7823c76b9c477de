package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/notification/migrations"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// testEndpoint counts the posts it gets and answers 500 until it is made
// healthy.
type testEndpoint struct {
	posts   atomic.Int32
	healthy atomic.Bool
}

// failingDelivery sets up a service on SQLite with cfg, a failing
// testEndpoint, and one pending delivery to it. It returns the service, its
// dispatcher and the endpoint.
func failingDelivery(t *testing.T, cfg Config) (*Service, *dispatcher, *testEndpoint) {
	t.Helper()
	ctx := context.Background()
	cfg.DB = sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "n.db"), migrations.Migrations(), inbox.Migrations())
	cfg.AllowPrivate = true
	ep := &testEndpoint{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ep.posts.Add(1)
		if !ep.healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	s := New(cfg)
	url, types := srv.URL, []string{event.ProductUpdated}
	if _, err := s.CreateEndpoint(ctx, EndpointInput{URL: &url, EventTypes: &types}); err != nil {
		t.Fatal(err)
	}
	_, handle := s.Consumer()
	if errs := handle(ctx, []bus.Event{bustest.NewEvent(t, event.ProductUpdated, "MUG", map[string]any{"sku": "MUG"})}); errs != nil {
		t.Fatal(errs)
	}
	return s, s.d, ep
}

// theDelivery reads the only delivery as the dispatcher lists it, with its
// status and when it is next due.
func theDelivery(t *testing.T, db *sqldb.DB) (x due, status string, next time.Time) {
	t.Helper()
	var payload string
	var nextUS int64
	if err := db.QueryRow(context.Background(), `SELECT id, endpoint_id, event_id, event_type, payload, attempts, status, next_attempt_us
		FROM webhook_deliveries`).Scan(&x.id, &x.endpointID, &x.eventID, &x.eventType, &payload, &x.attempts, &status, &nextUS); err != nil {
		t.Fatal(err)
	}
	x.payload = []byte(payload)
	return x, status, time.UnixMicro(nextUS)
}

// TestStaleDueListDoesNotRepeatAnAttempt: the dispatcher lists due
// deliveries, then launches each one not in flight. An attempt can be made
// and recorded between the two, so the list it launches from is stale; an
// attempt launched from it must not be made a second time.
func TestStaleDueListDoesNotRepeatAnAttempt(t *testing.T) {
	ctx := context.Background()
	s, d, ep := failingDelivery(t, Config{Schedule: []time.Duration{0, time.Hour, time.Hour}})
	x, _, _ := theDelivery(t, s.db)
	stale := x // as listed before the first attempt was recorded
	if err := d.attempt(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := d.attempt(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if n := ep.posts.Load(); n != 1 {
		t.Errorf("the endpoint got %d posts, want 1: the stale listing repeated the attempt", n)
	}
	if x, status, _ := theDelivery(t, s.db); x.attempts != 1 || status != "pending" {
		t.Errorf("delivery = %d attempts, %s; want 1, pending (next in an hour)", x.attempts, status)
	}
}

// TestRetrySchedule: each failed attempt schedules the next after the
// schedule's delay for it, ±20% jitter, and the last one fails the
// delivery. The clock is the service's, so this checks the decision, not
// how promptly the dispatcher acts on it.
func TestRetrySchedule(t *testing.T) {
	ctx := context.Background()
	schedule := []time.Duration{0, time.Minute, 10 * time.Minute, time.Hour}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, d, ep := failingDelivery(t, Config{Schedule: schedule, Now: func() time.Time { return clock }})
	for n := 1; n <= len(schedule); n++ {
		x, status, next := theDelivery(t, s.db)
		if status != "pending" || x.attempts != n-1 {
			t.Fatalf("before attempt %d: %s with %d attempts", n, status, x.attempts)
		}
		if next.After(clock) {
			clock = next
		}
		at := clock
		if err := d.attempt(ctx, x); err != nil {
			t.Fatal(err)
		}
		if ep.posts.Load() != int32(n) {
			t.Fatalf("attempt %d was not made (%d posts)", n, ep.posts.Load())
		}
		x, status, next = theDelivery(t, s.db)
		if n == len(schedule) {
			if status != "failed" || x.attempts != n {
				t.Fatalf("after the last attempt: %s with %d attempts, want failed with %d", status, x.attempts, n)
			}
			break
		}
		want := schedule[n]
		if delay := next.Sub(at); delay < want*8/10 || delay > want*12/10 {
			t.Errorf("attempt %d scheduled %s after attempt %d, want %s ±20%%", n+1, delay, n, want)
		}
	}
}

// TestRetryAndRecoverGoPastAnOpenBreaker: once an endpoint has failed often
// enough to open its circuit breaker, a retry or recover asked for by a
// person is attempted at once, not after the breaker's 30 s.
func TestRetryAndRecoverGoPastAnOpenBreaker(t *testing.T) {
	for name, resend := range map[string]func(*Service, due) error{
		"retry": func(s *Service, x due) error { return s.Retry(context.Background(), x.id) },
		"recover": func(s *Service, x due) error {
			_, err := s.Recover(context.Background(), x.endpointID, time.Time{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, d, ep := failingDelivery(t, Config{Schedule: make([]time.Duration, 5)})
			for range 5 {
				x, _, _ := theDelivery(t, s.db)
				if err := d.attempt(ctx, x); err != nil {
					t.Fatal(err)
				}
			}
			x, status, _ := theDelivery(t, s.db)
			if status != "failed" || d.breaker(x.endpointID).State() != gobreaker.StateOpen {
				t.Fatalf("after 5 failed attempts: delivery %s, breaker %s; want failed, open", status, d.breaker(x.endpointID).State())
			}
			ep.healthy.Store(true)
			if err := resend(s, x); err != nil {
				t.Fatal(err)
			}
			x, _, _ = theDelivery(t, s.db)
			if err := d.attempt(ctx, x); err != nil {
				t.Fatal(err)
			}
			if _, status, _ := theDelivery(t, s.db); status != "delivered" || ep.posts.Load() != 6 {
				t.Errorf("after the %s: delivery %s after %d posts; want delivered after 6", name, status, ep.posts.Load())
			}
		})
	}
}

// TestRecoverSendsOutWhatIsStillWaiting: a delivery still pending behind
// its schedule (or an open breaker) is part of an endpoint's backlog too:
// recover makes it due now and counts it, beside the failed ones.
func TestRecoverSendsOutWhatIsStillWaiting(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s, d, ep := failingDelivery(t, Config{Schedule: []time.Duration{0, time.Hour, time.Hour}, Now: func() time.Time { return clock }})
	x, _, _ := theDelivery(t, s.db)
	if err := d.attempt(ctx, x); err != nil {
		t.Fatal(err)
	}
	if _, status, next := theDelivery(t, s.db); status != "pending" || !next.After(clock.Add(30*time.Minute)) {
		t.Fatalf("after a failed attempt: %s, next at %s; want pending about an hour later", status, next)
	}
	ep.healthy.Store(true)
	got, err := s.Recover(ctx, x.endpointID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got != (Recovered{Failed: 0, Waiting: 1, Recovered: 1}) {
		t.Fatalf("recover = %+v; want the waiting delivery counted", got)
	}
	x, status, next := theDelivery(t, s.db)
	if status != "pending" || next.After(clock) {
		t.Fatalf("after recover: %s, next at %s; want due now (%s)", status, next, clock)
	}
	if err := d.attempt(ctx, x); err != nil {
		t.Fatal(err)
	}
	if _, status, _ := theDelivery(t, s.db); status != "delivered" {
		t.Fatalf("the recovered delivery: %s, want delivered", status)
	}
}
