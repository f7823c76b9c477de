package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Follow modes: how the runner observes orders settling.
const (
	// FollowStream watches one stream of every order's end, the admin
	// event stream filtered to order.completed and order.cancelled: one
	// connection for the whole run.
	FollowStream = "stream"
	// FollowOrder opens each order's own event stream, as a shop's order
	// page does: one connection per order in flight.
	FollowOrder = "order"
)

// outcome is how and when an order ended, as the watcher saw it.
type outcome struct {
	status, reason string
	at             time.Time
}

// watcher follows the ends of all orders through the admin event stream
// and hands each to the goroutine waiting for that order.
type watcher struct {
	mu      sync.Mutex
	waiting map[string]chan outcome
	early   map[string]outcome // ended before their POST's answer was read
	broken  chan struct{}      // closed when the stream cannot be resumed
	err     error
}

const endsPath = "/api/admin/stream?from=now&type=order.completed&type=order.cancelled"

// watch opens the stream and returns once it is live: every order placed
// after watch returns is seen ending.
func (r *Runner) watch(ctx context.Context) (*watcher, error) {
	w := &watcher{waiting: map[string]chan outcome{}, early: map[string]outcome{}, broken: make(chan struct{})}
	body, err := r.openEnds(ctx, "")
	if err != nil {
		return nil, err
	}
	go w.read(ctx, r, body)
	return w, nil
}

func (r *Runner) openEnds(ctx context.Context, lastID string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", r.cfg.Target+endsPath, nil)
	if err != nil {
		return nil, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := r.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("open the event stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("GET %s answered %d: following orders through the admin event stream needs an admin token (or use --follow order)", endsPath, resp.StatusCode)
		}
		return nil, fmt.Errorf("GET %s answered %d", endsPath, resp.StatusCode)
	}
	return resp.Body, nil
}

// read dispatches events until ctx ends, resuming after a break from the
// last event seen.
func (w *watcher) read(ctx context.Context, r *Runner, body io.ReadCloser) {
	var lastID string
	for failures := 0; ; {
		if body != nil {
			lastID = w.dispatch(body, lastID)
			body.Close()
			failures = 0
		}
		if ctx.Err() != nil {
			return
		}
		var err error
		if body, err = r.openEnds(ctx, lastID); err != nil {
			if failures++; failures == 5 || ctx.Err() != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				close(w.broken)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(failures) * 200 * time.Millisecond):
			}
		}
	}
}

// dispatch reads one connection's events and returns the last event id.
func (w *watcher) dispatch(body io.Reader, lastID string) string {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			lastID = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			typ = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && data != "":
			var ev struct {
				Data struct {
					OrderID string `json:"order_id"`
					Reason  string `json:"reason"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(data), &ev) == nil && ev.Data.OrderID != "" {
				w.ended(ev.Data.OrderID, outcome{status: strings.TrimPrefix(typ, "order."), reason: ev.Data.Reason, at: time.Now()})
			}
			typ, data = "", ""
		}
	}
	return lastID
}

func (w *watcher) ended(id string, o outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiting[id]; ok {
		delete(w.waiting, id)
		ch <- o
		return
	}
	w.early[id] = o
	// Ends of orders this run did not place (other clients, the setup's
	// probes) are never claimed: drop the old ones once there are many.
	if len(w.early) > maxEarly {
		for k, e := range w.early {
			if o.at.Sub(e.at) > time.Minute {
				delete(w.early, k)
			}
		}
	}
}

// maxEarly is how many unclaimed ends are kept before old ones are dropped.
const maxEarly = 10_000

// await waits for order id to end, for ctx, or for the stream to break.
func (w *watcher) await(ctx context.Context, id string) (outcome, error) {
	w.mu.Lock()
	if o, ok := w.early[id]; ok {
		delete(w.early, id)
		w.mu.Unlock()
		return o, nil
	}
	ch := make(chan outcome, 1)
	w.waiting[id] = ch
	w.mu.Unlock()
	select {
	case o := <-ch:
		return o, nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.waiting, id)
		w.mu.Unlock()
		return outcome{}, ctx.Err()
	case <-w.broken:
		return outcome{}, fmt.Errorf("stream_broken")
	}
}
