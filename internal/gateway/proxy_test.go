package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// backend is an upstream instance that answers with its name, or 503.
func backend(t *testing.T, name string, failing bool, hits *atomic.Int64) *Instance {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.ReadAll(r.Body)
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	in, err := NewInstance(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestProxyRetriesElsewhereAndEjects(t *testing.T) {
	var badHits, goodHits atomic.Int64
	bad := backend(t, "bad", true, &badHits)
	a := backend(t, "a", false, &goodHits)
	b := backend(t, "b", false, &goodHits)
	up, err := NewUpstream("orders", "round_robin", []*Instance{bad, a, b})
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(up.Handler())
	defer gw.Close()

	for i := range 30 {
		resp, err := http.Get(gw.URL + "/api/orders/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %d = %d %s: an idempotent request must be retried on another instance", i, resp.StatusCode, body)
		}
	}
	if bad.Healthy() {
		t.Fatal("the failing instance is still in rotation")
	}
	if n := badHits.Load(); n > EjectAfter {
		t.Fatalf("the failing instance got %d requests, want at most %d before ejection", n, EjectAfter)
	}

	// A POST without Idempotency-Key is never sent twice; with one it is.
	bad.SetHealthy(true)
	up.outcome(bad, nil)
	posts := func(key string) (statuses []int) {
		for range 3 {
			req, _ := http.NewRequest("POST", gw.URL+"/api/orders", strings.NewReader(`{}`))
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}
		return statuses
	}
	before := badHits.Load() + goodHits.Load()
	got := posts("")
	if sent := badHits.Load() + goodHits.Load() - before; sent != 3 {
		t.Fatalf("3 POSTs without a key reached upstreams %d times: never retry them", sent)
	}
	if !contains(got, 503) {
		t.Fatalf("round robin over 3 instances should have hit the failing one: %v", got)
	}
	bad.SetHealthy(true)
	up.outcome(bad, nil)
	for _, s := range posts("key-1") {
		if s != 200 {
			t.Fatalf("POST with Idempotency-Key = %d: it may be retried elsewhere", s)
		}
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestCallersGivingUpDoNotEjectInstances: requests cancelled by their
// callers must not count as instance failures; before the fix, the end of
// a load test ejected a healthy instance and opened its breaker.
func TestCallersGivingUpDoNotEjectInstances(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	in, _ := NewInstance(slow.URL)
	u, _ := NewUpstream("orders", "", []*Instance{in})
	h := u.Handler()
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequest("GET", "/api/orders/x", nil).WithContext(ctx)
		done := make(chan struct{})
		go func() {
			h.ServeHTTP(httptest.NewRecorder(), req)
			close(done)
		}()
		cancel()
		<-done
	}
	if !in.Healthy() {
		t.Fatal("the instance was ejected because callers cancelled")
	}
	if st := u.breaker(in).State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %s after cancellations", st)
	}
}
