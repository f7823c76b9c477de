package sse_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/sse"
)

// TestEventsReachTheClientWhole: a client reading the stream gets the
// retry delay, then each event with its id and type and every line of a
// multi-line data, while events and keep-alives are written at once from
// several goroutines.
func TestEventsReachTheClientWhole(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.Start(w)
		if err != nil {
			t.Error(err)
			return
		}
		stop := s.KeepAlive(r.Context(), time.Millisecond, func() {})
		defer stop()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Event(strings.Repeat("1", i+1), "order.confirmed", []byte("{\n\"a\":1\n}\n"))
			}()
		}
		wg.Wait()
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers: %q %q", ct, resp.Header.Get("Cache-Control"))
	}
	sc := bufio.NewScanner(resp.Body)
	var blocks [][]string
	var cur []string
	for sc.Scan() {
		if sc.Text() == "" {
			blocks = append(blocks, cur)
			cur = nil
			continue
		}
		cur = append(cur, sc.Text())
	}
	if len(blocks) == 0 || blocks[0][0] != "retry: 2000" {
		t.Fatalf("the stream does not start with its retry delay: %q", blocks)
	}
	events := 0
	for _, b := range blocks[1:] {
		if strings.HasPrefix(b[0], ":") {
			if len(b) != 1 || b[0] != ": keep-alive" {
				t.Errorf("a keep-alive mixed with something else: %q", b)
			}
			continue
		}
		events++
		if len(b) != 5 || !strings.HasPrefix(b[0], "id: 1") || b[1] != "event: order.confirmed" || b[2] != "data: {" || b[3] != `data: "a":1` || b[4] != "data: }" {
			t.Errorf("an event arrived torn or incomplete: %q", b)
		}
	}
	if events != 20 {
		t.Errorf("%d events arrived, want 20", events)
	}
}

// TestKeepAliveStopsAtAFailedWrite: once the client is gone a keep-alive
// write fails, failed is called (to end the stream), and stop returns.
func TestKeepAliveStopsAtAFailedWrite(t *testing.T) {
	w := &brokenWriter{ResponseRecorder: httptest.NewRecorder()}
	s, err := sse.Start(w)
	if err != nil {
		t.Fatal(err)
	}
	w.broken = true
	failed := make(chan struct{})
	stop := s.KeepAlive(context.Background(), time.Millisecond, func() { close(failed) })
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("a failing keep-alive did not say so")
	}
	stop()
	if _, err := sse.Start(struct{ http.ResponseWriter }{httptest.NewRecorder()}); err == nil {
		t.Error("Start on a writer that cannot flush succeeded")
	}
}

type brokenWriter struct {
	*httptest.ResponseRecorder
	mu     sync.Mutex
	broken bool
}

func (b *brokenWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken {
		return 0, errors.New("connection reset by peer")
	}
	return b.ResponseRecorder.Write(p)
}

// TestLastEventIDResumesFromTheHeaderOrTheQuery: a reconnecting client's
// Last-Event-ID wins over the query's; garbage is refused.
func TestLastEventIDResumesFromTheHeaderOrTheQuery(t *testing.T) {
	r := httptest.NewRequest("GET", "/x", nil)
	if n, err := sse.LastEventID(r, ""); n != 0 || err != nil {
		t.Errorf("none = %d %v", n, err)
	}
	if n, err := sse.LastEventID(r, "4"); n != 4 || err != nil {
		t.Errorf("the query's 4 = %d %v", n, err)
	}
	r.Header.Set("Last-Event-ID", "7")
	if n, err := sse.LastEventID(r, "4"); n != 7 || err != nil {
		t.Errorf("header 7 over query 4 = %d %v", n, err)
	}
	for _, bad := range []string{"-1", "x", "1e3"} {
		r.Header.Set("Last-Event-ID", bad)
		if _, err := sse.LastEventID(r, ""); err == nil {
			t.Errorf("Last-Event-ID %q accepted", bad)
		}
	}
}
