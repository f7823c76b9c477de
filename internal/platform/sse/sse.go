// Package sse writes Server-Sent Events (text/event-stream).
package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/every"
)

// Retry is the reconnection delay every stream tells its client.
const Retry = 2 * time.Second

// Writer writes events to one client and flushes each at once. Its methods
// may be called from several goroutines (events and keep-alives): each
// event or comment is written whole.
type Writer struct {
	mu sync.Mutex
	w  http.ResponseWriter
	f  http.Flusher
}

// Start sends the stream's headers. It fails if the connection cannot
// flush (then it is no stream).
func Start(w http.ResponseWriter) (*Writer, error) {
	f, ok := w.(http.Flusher)
	if !ok {
		return nil, errors.New("sse: response writer cannot flush")
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell proxies not to buffer
	w.WriteHeader(http.StatusOK)
	// How long a client waits before it reconnects after the stream ends
	// or breaks (resuming with Last-Event-ID): said, not left to each
	// client's default.
	fmt.Fprintf(w, "retry: %d\n\n", Retry.Milliseconds())
	f.Flush()
	return &Writer{w: w, f: f}, nil
}

// Event sends one event. data may span lines; each becomes a data: line.
func (s *Writer) Event(id, typ string, data []byte) error {
	var b bytes.Buffer
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	if typ != "" {
		fmt.Fprintf(&b, "event: %s\n", typ)
	}
	for _, line := range bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// Comment sends a comment line, which keeps idle connections alive.
func (s *Writer) Comment(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := fmt.Fprintf(s.w, ": %s\n\n", text); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// KeepAlive sends a keep-alive comment every interval, from a goroutine of
// its own, until ctx ends, a write fails (then it calls failed, which
// should end the stream) or stop is called. stop returns once no comment
// can be written any more: call it before the handler returns.
func (s *Writer) KeepAlive(ctx context.Context, interval time.Duration, failed func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every.After(ctx, interval, func(context.Context) {
			if err := s.Comment("keep-alive"); err != nil {
				failed()
				cancel()
			}
		})
	}()
	return func() { cancel(); <-done }
}

// LastEventID parses the Last-Event-ID header (or the given fallback
// query value) as a non-negative integer; empty means 0.
func LastEventID(r *http.Request, fallback string) (int, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = fallback
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("Last-Event-ID %q: want a non-negative integer", v)
	}
	return n, nil
}
