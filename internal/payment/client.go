package payment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// ProviderClient calls the provider over HTTP with a per-attempt timeout,
// retries with jittered exponential backoff, and a circuit breaker. Every
// call carries an Idempotency-Key (the order id unless the request names
// another), so a retry of an operation the provider already performed
// returns its first answer instead of charging again.
type ProviderClient struct {
	base     string
	http     *http.Client
	breaker  *gobreaker.CircuitBreaker[ProviderResult]
	attempts int
	apiKey   string
}

// ClientConfig configures a ProviderClient.
type ClientConfig struct {
	BaseURL  string        // e.g. http://127.0.0.1:8080
	Timeout  time.Duration // per attempt; zero means pspapi.ClientTimeout
	Attempts int           // zero means 3
	APIKey   string        // sent as `Authorization: Bearer KEY`
}

// NewProviderClient returns a client for the provider at cfg.BaseURL.
func NewProviderClient(cfg ClientConfig) *ProviderClient {
	if cfg.Timeout <= 0 {
		cfg.Timeout = pspapi.ClientTimeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	return &ProviderClient{
		base: cfg.BaseURL,
		http: &http.Client{Timeout: cfg.Timeout, Transport: telemetry.Transport(&http.Transport{
			// A batch calls the provider for many orders at once: keep as many
			// connections as it may use, so bursts reuse them rather than dial.
			MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second})},
		attempts: cfg.Attempts,
		apiKey:   cfg.APIKey,
		breaker: gobreaker.NewCircuitBreaker[ProviderResult](gobreaker.Settings{
			Name:    "psp",
			Timeout: 5 * time.Second, // open → half-open
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= 10
			},
		}),
	}
}

var _ Provider = (*ProviderClient)(nil)

// errTransient marks a provider failure worth retrying later.
var errTransient = errors.New("payment provider unavailable")

// Do performs op, retrying transient failures within this call. It returns
// an error wrapping errTransient when the provider could not be reached.
func (c *ProviderClient) Do(ctx context.Context, op string, req ProviderRequest) (ProviderResult, error) {
	var last error
	for attempt := range c.attempts {
		if attempt > 0 {
			backoff := time.Duration(float64(100*time.Millisecond) * float64(int(1)<<attempt) * (0.5 + rand.Float64()))
			select {
			case <-ctx.Done():
				return ProviderResult{}, fmt.Errorf("%w: %v", errTransient, ctx.Err())
			case <-time.After(backoff):
			}
		}
		res, err := c.breaker.Execute(func() (ProviderResult, error) { return c.once(ctx, op, req) })
		if err == nil {
			ProviderCalls.WithLabelValues(op, knownOutcome(res.Outcome)).Inc()
			return res, nil
		}
		ProviderCalls.WithLabelValues(op, callFailure(err)).Inc()
		last = err
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			break // the breaker is open: give up now, the event is retried later
		}
	}
	return ProviderResult{}, fmt.Errorf("%w: %s %s: %v", errTransient, op, req.OrderID, last)
}

func (c *ProviderClient) once(ctx context.Context, op string, req ProviderRequest) (ProviderResult, error) {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/psp/v1/"+op, bytes.NewReader(body))
	if err != nil {
		return ProviderResult{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.apiKey)
	key := req.IdempotencyKey
	if key == "" {
		key = req.OrderID
	}
	hreq.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(hreq)
	if err != nil {
		return ProviderResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return ProviderResult{}, fmt.Errorf("provider answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	var res ProviderResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return ProviderResult{}, fmt.Errorf("provider answer: %w", err)
	}
	return res, nil
}

// ProviderCalls counts calls to the payment provider by operation and
// outcome: the provider's answer ("done", "declined"), or why there was
// none ("breaker_open", "error").
var ProviderCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "ordermesh_provider_calls_total",
	Help: "Payment provider calls by operation and outcome (the provider's, or breaker_open / error when it gave none).",
}, []string{"op", "outcome"})

// knownOutcome bounds the label to the outcomes the provider API defines:
// the provider is another party, and its answer is input.
func knownOutcome(o string) string {
	switch o {
	case OutcomeApproved, OutcomePending, OutcomeDeclined, OutcomeDone:
		return o
	}
	return "other"
}

func callFailure(err error) string {
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return "breaker_open"
	}
	return "error"
}

// BreakerState is the provider breaker's state for metrics: 0 closed,
// 1 half-open, 2 open.
func (c *ProviderClient) BreakerState() float64 {
	switch c.breaker.State() {
	case gobreaker.StateOpen:
		return 2
	case gobreaker.StateHalfOpen:
		return 1
	}
	return 0
}
