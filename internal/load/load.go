// Package load is ordermesh's load generator: orders at a fixed arrival
// rate (open loop, so a slow system cannot slow the load down and hide its
// latency), each followed until it is completed or cancelled, with accept
// and completion latencies in HDR histograms measured from the moment each
// order was due to be sent. Completion is observed through Server-Sent
// Events, never by polling: by default on one stream of every order's end
// (the admin event stream), or on each order's own stream.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config configures a run.
type Config struct {
	Target   string        // base URL, e.g. http://localhost:8080
	Token    string        // bearer token, if the target needs one
	Rate     float64       // orders per second
	Duration time.Duration // how long to send
	// MaxInFlight caps orders not yet settled; an order due while the cap
	// is reached is counted as an error (client_saturated), never delayed.
	MaxInFlight int
	// Mix is the share (0-1) of orders meant to fail: declined cards,
	// out-of-stock SKUs and customer cancels, in equal parts.
	Mix float64
	// Drain is how long to wait, after sending stops, for orders to settle.
	Drain time.Duration
	// Follow is how orders are seen settling: FollowStream (the default)
	// or FollowOrder.
	Follow string
	// Progress, if set, is called about twice a second while running.
	Progress func(Progress)
	// StopOnError ends sending at the first error (a refused order, a
	// timeout at the door): a trial that has failed need not run out its
	// time, and its backlog stays small.
	StopOnError bool
}

// Progress is a snapshot of a running run.
type Progress struct {
	Elapsed, Duration   time.Duration
	Sent, Accepted      int64
	Completed, InFlight int64
	Errors              int64
	CurrentRate         float64
}

// Latency summarises one histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Result is the outcome of a run.
type Result struct {
	Rate            float64          `json:"target_rate"`
	Duration        float64          `json:"duration_s"`
	Sent            int64            `json:"sent"`
	Accepted        int64            `json:"accepted"`
	Completed       int64            `json:"completed"`
	Cancelled       int64            `json:"cancelled"`
	Unsettled       int64            `json:"unsettled"`
	AcceptedPerSec  float64          `json:"accepted_per_s"`
	SettledPerSec   float64          `json:"settled_per_s"`
	Accept          Latency          `json:"accept_latency"`
	Completion      Latency          `json:"completion_latency"`
	Errors          map[string]int64 `json:"errors"`
	CancelReasons   map[string]int64 `json:"cancel_reasons"`
	cancelledOrders []string
}

// ErrorCount is the number of errors of every kind.
func (r Result) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

const (
	skuCount   = 8
	skuStock   = 1_000_000
	emptySKU   = "LOAD-EMPTY"
	customerNo = 1000
)

func sku(i int) string { return "LOAD-" + strconv.Itoa(i%skuCount) }

// Runner sends load to one target.
type Runner struct {
	cfg     Config
	client  *http.Client
	stream  *http.Client // no overall timeout: streams last as long as the order
	ends    *watcher     // FollowStream: every order's end
	stopEnd context.CancelFunc
}

// New returns a runner for cfg.
func New(cfg Config) *Runner {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 20000
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 60 * time.Second
	}
	if cfg.Follow == "" {
		cfg.Follow = FollowStream
	}
	tr := &http.Transport{MaxIdleConns: 0, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second}
	return &Runner{cfg: cfg, client: &http.Client{Transport: tr, Timeout: 40 * time.Second}, stream: &http.Client{Transport: tr}}
}

func (r *Runner) request(ctx context.Context, method, path string, hdr map[string]string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, ok := body.([]byte)
		if !ok {
			raw, _ = json.Marshal(body)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.Target+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, raw, err
}

// Setup creates the products the load uses (enough stock for millions of
// orders, and one SKU with none) and waits until orders can be placed.
func (r *Runner) Setup(ctx context.Context) error {
	products := []map[string]any{{"sku": emptySKU, "name": "Always out of stock", "price_cents": 100, "currency": "EUR", "stock": 0}}
	for i := range skuCount {
		products = append(products, map[string]any{"sku": sku(i), "name": "Load item " + strconv.Itoa(i), "price_cents": 1000 + 100*i, "currency": "EUR", "stock": skuStock})
	}
	for _, p := range products {
		resp, body, err := r.request(ctx, "POST", "/api/products", nil, p)
		if err != nil {
			return fmt.Errorf("create products on %s: %w (is ordermesh running there?)", r.cfg.Target, err)
		}
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
			return fmt.Errorf("create product %v: %d %s", p["sku"], resp.StatusCode, bytes.TrimSpace(body))
		}
	}
	// The orders service learns products from events: wait until it can
	// price every SKU (a probe order per SKU, followed to its end).
	deadline := time.Now().Add(30 * time.Second)
	for i := range skuCount {
		for {
			resp, _, err := r.request(ctx, "POST", "/api/orders", map[string]string{"Idempotency-Key": fmt.Sprintf("load-probe-%d-%d", time.Now().UnixNano(), i)},
				orderBody(sku(i), "tok_ok", "load-probe"))
			if err == nil && resp.StatusCode == http.StatusAccepted {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("orders on %s cannot price %s after 30s", r.cfg.Target, sku(i))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if r.cfg.Follow == FollowStream && r.ends == nil {
		// The watcher outlives ctx, so that orders in flight when the run is
		// interrupted can still be seen settling; Close stops it.
		wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		w, err := r.watch(wctx)
		if err != nil {
			stop()
			return err
		}
		r.ends, r.stopEnd = w, stop
	}
	return nil
}

// Close stops following orders.
func (r *Runner) Close() {
	if r.stopEnd != nil {
		r.stopEnd()
	}
}

// run state shared by the order goroutines.
type run struct {
	mu                    sync.Mutex
	accept, completion    *hdrhistogram.Histogram
	errors, reasons       map[string]int64
	cancelled             []string
	sent, accepted        atomic.Int64
	completed, cancelledN atomic.Int64
	inFlight, errorsN     atomic.Int64
}

func (s *run) fail(kind string) {
	s.errorsN.Add(1)
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

// newRun is the state of a run that has not started.
func newRun() *run {
	return &run{
		accept:     hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
		completion: hdrhistogram.New(1, int64(2*time.Minute/time.Microsecond), 3),
		errors:     map[string]int64{},
		reasons:    map[string]int64{},
	}
}

// Run sends load for the configured duration, waits (up to Drain) for the
// orders to settle, and returns what it measured. Cancelling ctx stops
// sending early; the result still covers what was sent.
func (r *Runner) Run(ctx context.Context) Result {
	st := newRun()
	start := time.Now()
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	total := int64(r.cfg.Duration.Seconds() * r.cfg.Rate)
	var wg sync.WaitGroup
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()

	stopProgress := r.progress(st, start)
	// Senders are reused: an order's goroutine grows its stack through the
	// HTTP client, and a new goroutine per order would grow it again.
	idle := make(chan dueOrder)
send:
	for i := int64(0); i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				break send
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil || r.cfg.StopOnError && st.errorsN.Load() > 0 {
			break
		}
		st.sent.Add(1)
		if st.inFlight.Load() >= int64(r.cfg.MaxInFlight) {
			st.fail("client_saturated")
			continue
		}
		st.inFlight.Add(1)
		wg.Add(1)
		o := dueOrder{i: int(i), due: due}
		select {
		case idle <- o: // a sender that finished its last order takes it
		default:
			go func() {
				for {
					r.order(drainCtx, st, o.i, o.due)
					st.inFlight.Add(-1)
					wg.Done()
					var ok bool
					if o, ok = <-idle; !ok {
						return
					}
				}
			}()
		}
	}
	close(idle)
	sentFor := time.Since(start)
	r.drain(ctx, &wg, cancelDrain)
	stopProgress()
	return r.result(st, sentFor, time.Since(start))
}

// drain waits for the orders in flight to settle, for at most the drain
// time (5 seconds when ctx was interrupted), then gives up on the rest.
func (r *Runner) drain(ctx context.Context, wg *sync.WaitGroup, cancelDrain func()) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.cfg.Drain):
		cancelDrain()
		<-done
	case <-ctx.Done():
		// Interrupted: give orders in flight a short grace, then stop.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancelDrain()
			<-done
		}
	}
}

// result sums up a run that sent for sentFor and lasted elapsed.
func (r *Runner) result(st *run, sentFor, elapsed time.Duration) Result {
	res := Result{
		Rate: r.cfg.Rate, Duration: sentFor.Seconds(),
		Sent: st.sent.Load(), Accepted: st.accepted.Load(), Completed: st.completed.Load(), Cancelled: st.cancelledN.Load(),
		Accept: summary(st.accept), Completion: summary(st.completion),
		Errors: st.errors, CancelReasons: st.reasons, cancelledOrders: st.cancelled,
	}
	res.Unsettled = res.Accepted - res.Completed - res.Cancelled
	res.AcceptedPerSec = float64(res.Accepted) / sentFor.Seconds()
	res.SettledPerSec = float64(res.Completed+res.Cancelled) / elapsed.Seconds()
	return res
}

func (r *Runner) progress(st *run, start time.Time) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		lastSent, lastAt := int64(0), start
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				sent := st.sent.Load()
				rate := float64(sent-lastSent) / now.Sub(lastAt).Seconds()
				lastSent, lastAt = sent, now
				r.cfg.Progress(Progress{
					Elapsed: now.Sub(start), Duration: r.cfg.Duration, Sent: sent, Accepted: st.accepted.Load(),
					Completed: st.completed.Load() + st.cancelledN.Load(), InFlight: st.inFlight.Load(),
					Errors: st.errorsN.Load(), CurrentRate: rate,
				})
			}
		}
	}()
	return func() { close(quit); <-finished }
}

func summary(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}
