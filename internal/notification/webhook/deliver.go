package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

// dispatcher attempts due deliveries: at most PerEndpoint at once per
// endpoint, with a circuit breaker per endpoint, so a slow or failing
// endpoint never holds up deliveries to the others.
type dispatcher struct {
	s        *Service
	client   *http.Client
	mu       sync.Mutex
	inflight map[string]bool // delivery ids being attempted
	busy     map[string]int  // endpoint id → attempts in flight
	breakers map[string]*gobreaker.CircuitBreaker[int]
	wg       sync.WaitGroup
}

func newDispatcher(s *Service) *dispatcher {
	tr := &http.Transport{DialContext: guardedDialer(s.cfg.AllowPrivate), MaxIdleConnsPerHost: 16,
		TLSHandshakeTimeout: connectTimeout, ResponseHeaderTimeout: totalTimeout}
	return &dispatcher{
		s: s,
		client: &http.Client{Transport: tr, Timeout: totalTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		inflight: map[string]bool{}, busy: map[string]int{}, breakers: map[string]*gobreaker.CircuitBreaker[int]{},
	}
}

type due struct {
	id, endpointID, eventID, eventType string
	traceparent                        string // of the event's handling: attempts join the order's trace
	payload                            []byte
	attempts                           int
}

func (d *dispatcher) run(ctx context.Context) {
	defer func() {
		done := make(chan struct{})
		go func() { d.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(totalTimeout):
		}
	}()
	for {
		next, err := d.launchDue(ctx)
		if err != nil && ctx.Err() == nil {
			d.s.log.Warn("webhook dispatch", "err", err)
			next = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-d.s.wake:
		case <-time.After(min(next, time.Second)):
		}
	}
}

// launchDue starts every due delivery it has room for and returns how long
// until the next one is due.
func (d *dispatcher) launchDue(ctx context.Context) (time.Duration, error) {
	now := d.s.cfg.Now()
	batch, err := dueDeliveries(ctx, d.s.db, now, 500)
	if err != nil {
		return time.Second, err
	}
	for _, x := range batch {
		d.mu.Lock()
		if d.inflight[x.id] || d.busy[x.endpointID] >= d.s.cfg.PerEndpoint {
			d.mu.Unlock()
			continue
		}
		d.inflight[x.id] = true
		d.busy[x.endpointID]++
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() {
				d.mu.Lock()
				delete(d.inflight, x.id)
				d.busy[x.endpointID]--
				d.mu.Unlock()
				d.s.Wake() // room for the next one to this endpoint
			}()
			if err := d.attempt(context.WithoutCancel(ctx), x); err != nil {
				d.s.log.Warn("webhook attempt", "delivery", x.id, "err", err)
			}
		}()
	}
	nextUS, err := nextDueUS(ctx, d.s.db)
	if err != nil || nextUS == 0 {
		return time.Second, err
	}
	return max(time.Until(time.UnixMicro(nextUS)), 10*time.Millisecond), nil
}

func (d *dispatcher) breaker(endpointID string) *gobreaker.CircuitBreaker[int] {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.breakers[endpointID]
	if !ok {
		b = gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
			Name: endpointID, Timeout: 30 * time.Second,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 5 },
		})
		d.breakers[endpointID] = b
	}
	return b
}

// breakerState is endpointID's breaker as this process sees it: closed,
// open (no attempts until its timeout) or half-open (one trial attempt).
func (d *dispatcher) breakerState(endpointID string) string {
	d.mu.Lock()
	b, ok := d.breakers[endpointID]
	d.mu.Unlock()
	if !ok {
		return gobreaker.StateClosed.String()
	}
	return b.State().String()
}

// closeBreaker forgets endpointID's breaker, so the next attempt goes
// ahead even if it was open: a person asking to retry or recover has said
// the endpoint is fixed, and should not wait out the open state. If it is
// not, the breaker opens again after as many failures as the first time.
// This is the breaker of this process only; another instance's stays as
// it is until its own timeout.
func (d *dispatcher) closeBreaker(endpointID string) {
	d.mu.Lock()
	delete(d.breakers, endpointID)
	d.mu.Unlock()
}

// attemptResult is what one HTTP attempt produced.
type attemptResult struct {
	status     int
	latency    time.Duration
	err        error
	response   string
	retryAfter time.Duration
}

// attempt makes one delivery attempt, if it is still due, and records it
// with its consequence.
func (d *dispatcher) attempt(ctx context.Context, x due) error {
	// launchDue's list may be stale: it may have been read before the
	// previous attempt of this delivery was recorded, and launched after
	// that attempt left the in-flight set. Attempt only if the delivery is
	// still as read; else that attempt would be made twice.
	now := d.s.cfg.Now()
	still, err := stillDue(ctx, d.s.db, x, now)
	if err != nil || !still {
		return err
	}
	e, err := d.s.Endpoint(ctx, x.endpointID)
	switch {
	case apperr.KindOf(err) == apperr.NotFound, err == nil && e.Disabled:
		return failDelivery(ctx, d.s.db, x.id, x.attempts) // no one to deliver to
	case err != nil:
		return err // the database did not answer: the delivery stays due
	}
	var out attemptResult
	ctx, span := telemetry.StartEvent(ctx, "webhook attempt", trace.SpanKindClient, x.traceparent,
		telemetry.AttrEventID.String(x.eventID), telemetry.AttrEventType.String(x.eventType),
		attribute.String("ordermesh.webhook.endpoint", e.ID), attribute.Int("ordermesh.webhook.attempt", x.attempts+1))
	defer span.End()
	_, berr := d.breaker(e.ID).Execute(func() (int, error) {
		out = d.post(ctx, e, x, now)
		if out.err != nil || out.status >= 500 || out.status == http.StatusTooManyRequests {
			return out.status, errors.New("endpoint failing")
		}
		return out.status, nil
	})
	outcome := attemptOutcome(out, berr)
	Attempts.WithLabelValues(outcome).Inc()
	span.SetAttributes(attribute.String("ordermesh.webhook.outcome", outcome), attribute.Int("http.response.status_code", out.status))
	if outcome != "delivered" {
		span.SetStatus(codes.Error, outcome)
	}
	if errors.Is(berr, gobreaker.ErrOpenState) || errors.Is(berr, gobreaker.ErrTooManyRequests) {
		// Not attempted: the endpoint's breaker is open. Try again later
		// without spending an attempt.
		return postpone(ctx, d.s.db, x.id, now.Add(30*time.Second))
	}
	return d.record(ctx, e, x, now, out)
}

func (d *dispatcher) post(ctx context.Context, e Endpoint, x due, now time.Time) attemptResult {
	sig, err := stdwebhook.Signatures(e.signingSecrets(now), x.eventID, now, x.payload)
	if err != nil {
		return attemptResult{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(x.payload))
	if err != nil {
		return attemptResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ordermesh-webhooks/1")
	req.Header.Set(stdwebhook.HeaderID, x.eventID)
	req.Header.Set(stdwebhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(stdwebhook.HeaderSignature, sig)
	if tp := telemetry.TraceParent(ctx); tp != "" {
		req.Header.Set("traceparent", tp) // the merchant's own spans can join the order's trace
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	res := attemptResult{latency: time.Since(start), err: err}
	if err != nil {
		return res
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	res.status, res.response = resp.StatusCode, string(body)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return res
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, 24*time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// record logs the attempt and applies its consequence: delivered; retried
// on schedule (or after Retry-After); failed when the schedule is spent;
// the endpoint disabled on 410 or after failing for DisableAfter.
func (d *dispatcher) record(ctx context.Context, e Endpoint, x due, at time.Time, res attemptResult) error {
	n := x.attempts + 1
	errText := ""
	if res.err != nil {
		errText = res.err.Error()
	}
	ok := res.err == nil && res.status >= 200 && res.status < 300
	if !ok {
		d.s.log.Warn("webhook delivery failed", "endpoint", e.ID, "url", e.URL, "delivery", x.id, "event_type", x.eventType,
			"attempt", n, "status", res.status, "err", errText)
	}
	return d.s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := insertAttempt(ctx, tx, x.id, n, at, res, errText); err != nil {
			return err
		}
		if ok {
			if err := deliveredAt(ctx, tx, x.id, n); err != nil {
				return err
			}
			return setFailingSince(ctx, tx, e.ID, time.Time{})
		}
		if res.status == http.StatusGone {
			if err := failDelivery(ctx, tx, x.id, n); err != nil {
				return err
			}
			return d.disable(ctx, tx, e, "the endpoint answered 410 Gone")
		}
		failingSince := e.failingSince
		if failingSince.IsZero() {
			failingSince = at
			if err := setFailingSince(ctx, tx, e.ID, at); err != nil {
				return err
			}
		}
		if at.Sub(failingSince) >= d.s.cfg.DisableAfter {
			if err := failDelivery(ctx, tx, x.id, n); err != nil {
				return err
			}
			return d.disable(ctx, tx, e, fmt.Sprintf("failing continuously since %s", failingSince.UTC().Format(time.RFC3339)))
		}
		if n >= len(d.s.cfg.Schedule) {
			return failDelivery(ctx, tx, x.id, n)
		}
		delay := jitter(d.s.cfg.Schedule[n])
		if res.retryAfter > 0 {
			delay = res.retryAfter
		}
		return retryAt(ctx, tx, x.id, n, at.Add(delay))
	})
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (d *dispatcher) disable(ctx context.Context, tx *sqldb.Tx, e Endpoint, reason string) error {
	if err := disableEndpoint(ctx, tx, e.ID, reason); err != nil {
		return err
	}
	tx.OnCommit(func() { go d.s.narrow(context.Background()) })
	if d.s.cfg.Outbox == nil {
		return nil
	}
	return d.s.cfg.Outbox.Emit(ctx, tx, source, event.EndpointDisabled, e.ID,
		event.Endpoint{EndpointID: e.ID, URL: e.URL, Reason: reason}, nil)
}

// Attempts counts webhook delivery attempts by outcome: delivered (2xx),
// rejected (another answer), error (no answer), or breaker_open (not
// attempted: the endpoint's breaker is open).
var Attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "ordermesh_webhook_attempts_total",
	Help: "Webhook delivery attempts by outcome: delivered, rejected, error, or breaker_open (not attempted).",
}, []string{"outcome"})

func init() {
	for _, o := range []string{"delivered", "rejected", "error", "breaker_open"} {
		Attempts.WithLabelValues(o)
	}
}

func attemptOutcome(res attemptResult, berr error) string {
	switch {
	case errors.Is(berr, gobreaker.ErrOpenState) || errors.Is(berr, gobreaker.ErrTooManyRequests):
		return "breaker_open"
	case res.err != nil:
		return "error"
	case res.status >= 200 && res.status < 300:
		return "delivered"
	}
	return "rejected"
}

// openBreakers counts the endpoints whose breaker is open or half-open
// in this process.
func (d *dispatcher) openBreakers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, b := range d.breakers {
		if b.State() != gobreaker.StateClosed {
			n++
		}
	}
	return n
}

// OpenBreakers is how many endpoints this process is not attempting now
// because their breaker is open (or half-open).
func (s *Service) OpenBreakers() int { return s.d.openBreakers() }
