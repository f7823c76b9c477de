package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/ordermesh/ordermesh/internal/platform/identity"
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

// TestHashRoutingSticksToSubject: with the hash policy keyed by subject, a
// caller's requests (its SSE streams, long polls) all reach one instance,
// and callers spread over the instances.
func TestHashRoutingSticksToSubject(t *testing.T) {
	var hits atomic.Int64
	ins := []*Instance{backend(t, "a", false, &hits), backend(t, "b", false, &hits), backend(t, "c", false, &hits)}
	up, err := NewUpstream("orders", "hash", ins)
	if err != nil {
		t.Fatal(err)
	}
	if up.Key, err = HashKey("subject"); err != nil {
		t.Fatal(err)
	}
	h := up.Handler()
	seen := map[string]bool{}
	for c := range 30 {
		sub := fmt.Sprintf("customer-%d", c)
		var first string
		for range 5 {
			req := httptest.NewRequest("GET", "/api/orders/x/events", nil)
			req = req.WithContext(identity.With(req.Context(), identity.Identity{Subject: sub}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if first == "" {
				first = rec.Body.String()
			} else if rec.Body.String() != first {
				t.Fatalf("%s went to %s and then %s", sub, first, rec.Body.String())
			}
		}
		seen[first] = true
	}
	if len(seen) != 3 {
		t.Fatalf("30 callers used %d of 3 instances", len(seen))
	}
	for _, bad := range []string{"cookie", "header:"} {
		if _, err := HashKey(bad); err == nil {
			t.Errorf("HashKey(%q) accepted", bad)
		}
	}
}

// TestOneRequestIDInTheAnswer: the upstream echoes the X-Request-ID the
// gateway sent it, and the gateway's answer carries it once.
func TestOneRequestIDInTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", r.Header.Get("X-Request-ID"))
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	in, err := NewInstance(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	up, err := NewUpstream("orders", "round_robin", []*Instance{in})
	if err != nil {
		t.Fatal(err)
	}
	h := up.Handler()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Request-ID", "req-1") // as the edge's Observe does
		w.Header().Set("X-Request-ID", "req-1")
		h.ServeHTTP(w, r)
	}))
	defer gw.Close()
	resp, err := http.Get(gw.URL + "/api/orders/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("X-Request-ID"); len(got) != 1 || got[0] != "req-1" {
		t.Fatalf("X-Request-ID in the answer: %q; want it once", got)
	}
}
