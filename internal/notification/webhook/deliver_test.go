package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// TestStaleDueListDoesNotRepeatAnAttempt: the dispatcher lists due
// deliveries, then launches each one not in flight. An attempt can be made
// and recorded between the two, so the list it launches from is stale; an
// attempt launched from it must not be made a second time.
func TestStaleDueListDoesNotRepeatAnAttempt(t *testing.T) {
	ctx := context.Background()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "n.db"), notification.Migrations(), inbox.Migrations())
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	s := New(Config{DB: db, AllowPrivate: true, Schedule: []time.Duration{0, time.Hour, time.Hour}})
	url, types := srv.URL, []string{event.ProductUpdated}
	if _, err := s.CreateEndpoint(ctx, EndpointInput{URL: &url, EventTypes: &types}); err != nil {
		t.Fatal(err)
	}
	_, handle := s.Consumer()
	if errs := handle(ctx, []bus.Event{bustest.NewEvent(t, event.ProductUpdated, "MUG", map[string]any{"sku": "MUG"})}); errs != nil {
		t.Fatal(errs)
	}

	d := newDispatcher(s)
	var x due
	var payload string
	if err := db.QueryRow(ctx, "SELECT id, endpoint_id, event_id, event_type, payload, attempts FROM webhook_deliveries").
		Scan(&x.id, &x.endpointID, &x.eventID, &x.eventType, &payload, &x.attempts); err != nil {
		t.Fatal(err)
	}
	x.payload = []byte(payload)
	stale := x // as listed before the first attempt was recorded
	if err := d.attempt(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := d.attempt(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the endpoint got %d posts, want 1: the stale listing repeated the attempt", n)
	}
	var attempts int
	var status string
	if err := db.QueryRow(ctx, "SELECT attempts, status FROM webhook_deliveries WHERE id = ?", x.id).Scan(&attempts, &status); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || status != "pending" {
		t.Errorf("delivery = %d attempts, %s; want 1, pending (next in an hour)", attempts, status)
	}
}
