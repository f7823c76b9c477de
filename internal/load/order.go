package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// orderBody is the JSON of an order for one unit of sku. It is written
// directly rather than marshalled: the load generator shares the machine
// with the system it measures, so its own cost per order is kept small.
// The strings it is given are plain ASCII, for which %q quotes as JSON does.
func orderBody(sku, token, customer string) []byte {
	return fmt.Appendf(nil, `{"customer_id":%q,"items":[{"sku":%q,"quantity":1}],"payment_token":%q,`+
		`"shipping_address":{"name":"Load Test","line1":"1 Benchmark Way","city":"Lyon","postal_code":"69001","country":"FR"}}`,
		customer, sku, token)
}

// dueOrder is the i-th order of a run, due to be sent at due.
type dueOrder struct {
	i   int
	due time.Time
}

type orderView struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	CancelReason string `json:"cancel_reason"`
	Version      int    `json:"version"`
}

// order places one order due at due and follows it to its end.
func (r *Runner) order(ctx context.Context, st *run, i int, due time.Time) {
	token, item, cancel := "tok_ok", sku(i), false
	if rand.Float64() < r.cfg.Mix {
		switch i % 3 {
		case 0:
			token = []string{"tok_decline", "tok_insufficient_funds"}[i%2]
		case 1:
			item = emptySKU
		case 2:
			cancel = true
		}
	}
	key := fmt.Sprintf("load-%d-%d", due.UnixNano(), i)
	resp, body, err := r.request(ctx, "POST", "/api/orders", map[string]string{"Idempotency-Key": key},
		orderBody(item, token, "load-"+strconv.Itoa(i%customerNo)))
	if err != nil {
		st.fail(errorKind(err))
		return
	}
	if resp.StatusCode != http.StatusAccepted {
		st.fail("http_" + strconv.Itoa(resp.StatusCode))
		return
	}
	accepted := time.Since(due)
	var o orderView
	if err := json.Unmarshal(body, &o); err != nil || o.ID == "" {
		st.fail("bad_response")
		return
	}
	st.accepted.Add(1)
	st.mu.Lock()
	st.accept.RecordValue(max(1, accepted.Microseconds()))
	st.mu.Unlock()
	if cancel {
		if resp, _, err := r.request(ctx, "POST", "/api/orders/"+o.ID+"/cancel", nil, nil); err != nil {
			st.fail(errorKind(err))
		} else if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusConflict {
			st.fail("cancel_http_" + strconv.Itoa(resp.StatusCode))
		}
	}
	if r.ends != nil {
		end, err := r.ends.await(ctx, o.ID)
		if err != nil {
			if ctx.Err() == nil {
				st.fail(err.Error())
			}
			return
		}
		o.Status, o.CancelReason = end.status, end.reason
		st.record(o, end.at.Sub(due))
		return
	}
	if err := r.follow(ctx, &o); err != nil {
		if ctx.Err() == nil {
			st.fail(err.Error())
		}
		return
	}
	st.record(o, time.Since(due))
}

// record counts a settled order and its completion latency.
func (st *run) record(o orderView, took time.Duration) {
	st.mu.Lock()
	st.completion.RecordValue(max(1, took.Microseconds()))
	if o.Status == "cancelled" {
		st.reasons[o.CancelReason]++
		st.cancelled = append(st.cancelled, o.ID)
	}
	st.mu.Unlock()
	if o.Status == "completed" {
		st.completed.Add(1)
	} else {
		st.cancelledN.Add(1)
	}
}

// follow reads the order's event stream (SSE) from the version it has
// until the order is completed or cancelled, reconnecting with
// Last-Event-ID if the stream breaks. It returns an error kind on failure.
func (r *Runner) follow(ctx context.Context, o *orderView) error {
	for attempt := 0; o.Status != "completed" && o.Status != "cancelled"; attempt++ {
		if attempt == 5 {
			return errors.New("stream_broken")
		}
		req, err := http.NewRequestWithContext(ctx, "GET", r.cfg.Target+"/api/orders/"+o.ID+"/events", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Last-Event-ID", strconv.Itoa(o.Version))
		if r.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
		}
		resp, err := r.stream.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("events_http_%d", resp.StatusCode)
		}
		readEvents(resp.Body, o)
		resp.Body.Close()
	}
	return nil
}

// readEvents applies each event's order to o until the stream ends.
func readEvents(body io.Reader, o *orderView) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			var next orderView
			if json.Unmarshal(data, &next) == nil && next.Version > o.Version {
				next.ID = o.ID
				*o = next
			}
		}
	}
}

func errorKind(err error) string {
	var nerr interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	default:
		return "connection"
	}
}
