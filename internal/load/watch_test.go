package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFollowStreamNeedsAdmin: when the event stream refuses the token, the
// runner says to use an admin token or --follow order.
func TestFollowStreamNeedsAdmin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	r := New(Config{Target: srv.URL, Token: "customer"})
	_, err := r.watch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin token") || !strings.Contains(err.Error(), "--follow order") {
		t.Fatalf("watch = %v, want an error naming the admin token and --follow order", err)
	}
}

// TestWatcherHandsEachEndToItsOrder: ends that arrive before their order
// is awaited are kept; the others wake the waiting order.
func TestWatcherHandsEachEndToItsOrder(t *testing.T) {
	w := &watcher{waiting: map[string]chan outcome{}, early: map[string]outcome{}, broken: make(chan struct{})}
	stream := "id: 7\nevent: order.cancelled\ndata: {\"type\":\"order.cancelled\",\"data\":{\"order_id\":\"early\",\"reason\":\"out_of_stock\"}}\n\n"
	if last := w.dispatch(strings.NewReader(stream), "6"); last != "7" {
		t.Fatalf("last id = %s, want 7", last)
	}
	got, err := w.await(context.Background(), "early")
	if err != nil || got.status != "cancelled" || got.reason != "out_of_stock" {
		t.Fatalf("early end = %+v, %v", got, err)
	}
	done := make(chan outcome)
	go func() {
		o, _ := w.await(context.Background(), "late")
		done <- o
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		w.mu.Lock()
		_, waiting := w.waiting["late"]
		w.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("await never registered the order")
		}
		<-time.After(time.Millisecond)
	}
	w.dispatch(strings.NewReader("id: 8\nevent: order.completed\ndata: {\"data\":{\"order_id\":\"late\"}}\n\n"), "7")
	if o := <-done; o.status != "completed" {
		t.Fatalf("late end = %+v", o)
	}
	if len(w.early) != 0 || len(w.waiting) != 0 {
		t.Fatalf("left over: early %v, waiting %v", w.early, w.waiting)
	}
}

// TestWatcherDropsOldUnclaimedEnds: ends of orders nobody awaits (other
// clients' orders) do not pile up for the whole run.
func TestWatcherDropsOldUnclaimedEnds(t *testing.T) {
	w := &watcher{waiting: map[string]chan outcome{}, early: map[string]outcome{}, broken: make(chan struct{})}
	old := time.Now().Add(-2 * time.Minute)
	for i := range maxEarly {
		w.early[fmt.Sprint("other-", i)] = outcome{status: "completed", at: old}
	}
	w.ended("fresh", outcome{status: "completed", at: time.Now()})
	if len(w.early) != 1 {
		t.Fatalf("%d unclaimed ends kept, want only the fresh one", len(w.early))
	}
	if o, err := w.await(context.Background(), "fresh"); err != nil || o.status != "completed" {
		t.Fatalf("fresh end = %+v, %v", o, err)
	}
}
