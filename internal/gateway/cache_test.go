package gateway

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream answers /api/products/{sku}: 404 for "missing", else a
// product with an ETag, counting the calls it gets.
func countingUpstream(calls *atomic.Int64, gate <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if gate != nil {
			<-gate
		}
		if r.URL.Path == "/api/products/missing" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			w.Write([]byte(`{"status":404}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Set-Cookie", "never=cached")
		w.Write([]byte(`{"sku":"MUG"}`))
	})
}

func get(t *testing.T, h http.Handler, c *Cache, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	c.Serve(rec, req, h)
	return rec
}

func TestCacheOneUpstreamRequestForConcurrentMisses(t *testing.T) {
	var calls atomic.Int64
	gate := make(chan struct{})
	up := countingUpstream(&calls, gate)
	c := NewCache(time.Minute, time.Minute)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = get(t, up, c, "/api/products/MUG", nil).Code
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times for 50 concurrent requests", n)
	}
	for i, code := range codes {
		if code != 200 {
			t.Fatalf("request %d = %d", i, code)
		}
	}
}

func TestCacheHitsETagsAndHeaders(t *testing.T) {
	var calls atomic.Int64
	up := countingUpstream(&calls, nil)
	c := NewCache(time.Minute, time.Minute)
	first := get(t, up, c, "/api/products/MUG", nil)
	second := get(t, up, c, "/api/products/MUG", nil)
	if first.Header().Get("X-Cache") != "MISS" || second.Header().Get("X-Cache") != "HIT" || second.Body.String() != `{"sku":"MUG"}` {
		t.Fatalf("first %s, second %s %q", first.Header().Get("X-Cache"), second.Header().Get("X-Cache"), second.Body)
	}
	if second.Header().Get("Set-Cookie") != "" {
		t.Fatal("a Set-Cookie header was served from the cache")
	}
	if rec := get(t, up, c, "/api/products/MUG", map[string]string{"If-None-Match": `"v1"`}); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Fatalf("If-None-Match = %d %q, want 304", rec.Code, rec.Body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times", n)
	}
}

func TestCacheNegativeAndPurge(t *testing.T) {
	var calls atomic.Int64
	up := countingUpstream(&calls, nil)
	c := NewCache(time.Minute, 20*time.Millisecond)
	for range 3 {
		if rec := get(t, up, c, "/api/products/missing", nil); rec.Code != 404 {
			t.Fatalf("= %d", rec.Code)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("404 fetched %d times; it is cached briefly", n)
	}
	// The negative entry expires on its own, far sooner than the TTL.
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 1; {
		if time.Now().After(deadline) {
			t.Fatal("the 404 stayed cached")
		}
		get(t, up, c, "/api/products/missing", nil)
	}
	get(t, up, c, "/api/products/MUG", nil)
	before := calls.Load()
	c.Purge() // product.updated
	if rec := get(t, up, c, "/api/products/MUG", nil); rec.Header().Get("X-Cache") != "MISS" || calls.Load() != before+1 {
		t.Fatalf("after Purge: %s, calls %d→%d", rec.Header().Get("X-Cache"), before, calls.Load())
	}
}

// TestCacheFetchDuringPurgeNotStored: an answer fetched before a purge
// could be stale, so it is served to its callers but not stored.
func TestCacheFetchDuringPurgeNotStored(t *testing.T) {
	var calls atomic.Int64
	gate := make(chan struct{})
	c := NewCache(time.Minute, time.Minute)
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-gate
		}
		w.Write([]byte("x"))
	})
	done := make(chan struct{})
	go func() {
		get(t, up, c, "/api/products", nil)
		close(done)
	}()
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c.Purge()
	close(gate)
	<-done
	if rec := get(t, up, c, "/api/products", nil); rec.Header().Get("X-Cache") != "MISS" {
		t.Fatalf("a fetch that straddled a purge was stored (%s)", rec.Header().Get("X-Cache"))
	}
}
