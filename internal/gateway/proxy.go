package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

// Upstream is one service's instances behind the gateway, with the policy
// that chooses among them.
type Upstream struct {
	Name      string
	Instances []*Instance
	Balancer  Balancer
	// Key returns the routing key for hashing policies; nil means the
	// client address.
	Key func(*http.Request) string
	// Timeout bounds each attempt (not streams once their headers are in).
	Timeout time.Duration
	// Log receives failed attempts; nil means slog.Default().
	Log *slog.Logger

	base http.RoundTripper
	// checks carries the health checks: the same connections, no spans (a
	// probe every few seconds per instance would bury real traces).
	checks   http.RoundTripper
	mu       sync.Mutex
	breakers map[*Instance]*gobreaker.CircuitBreaker[*http.Response]
	failures map[*Instance]int
	// checked is set once a health check has found an instance ready.
	checked atomic.Bool
}

// EjectAfter is how many consecutive failures take an instance out of
// rotation until an active health check finds it ready again.
const EjectAfter = 3

// NewUpstream returns an upstream over instances with policy.
func NewUpstream(name, policy string, instances []*Instance) (*Upstream, error) {
	b, err := NewBalancer(policy, instances)
	if err != nil {
		return nil, err
	}
	plain := &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	return &Upstream{
		Name: name, Instances: instances, Balancer: b, Timeout: 30 * time.Second,
		base: telemetry.Transport(plain), checks: plain,
		breakers: map[*Instance]*gobreaker.CircuitBreaker[*http.Response]{},
		failures: map[*Instance]int{},
	}, nil
}

func (u *Upstream) logger() *slog.Logger {
	if u.Log == nil {
		return slog.Default()
	}
	return u.Log
}

// Handler proxies requests to the upstream.
func (u *Upstream) Handler() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.Host = ""
		},
		Transport:  u,
		BufferPool: copyBuffers,
		// The gateway answers with the request's X-Request-ID already (the
		// one it sent upstream); the upstream's copy would make it two.
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("X-Request-ID")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil || errors.Is(err, context.DeadlineExceeded) {
				u.logger().Warn("upstream failed", "upstream", u.Name, "method", r.Method, "path", r.URL.Path, "err", err)
			}
			w.Header().Set("Content-Type", "application/problem+json")
			if errors.Is(err, context.DeadlineExceeded) {
				w.WriteHeader(http.StatusGatewayTimeout)
				io.WriteString(w, `{"type":"about:blank","title":"Gateway Timeout","status":504,"detail":"`+u.Name+` did not answer within the route's timeout"}`)
				return
			}
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"type":"about:blank","title":"Bad Gateway","status":502,"detail":"no upstream instance of `+u.Name+` answered"}`)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Buffer the body (bounded) so a retry can send it again.
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
			if err != nil {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				io.WriteString(w, `{"type":"about:blank","title":"Request Entity Too Large","status":413,"detail":"body over 1 MiB"}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		rp.ServeHTTP(w, r)
	})
}

// HashKey returns the routing key of the hash policy: "subject" (the
// caller's; the client address for anonymous callers) by default, "ip", or
// "header:NAME".
func HashKey(spec string) (func(*http.Request) string, error) {
	clientIP := func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	switch {
	case spec == "" || spec == "subject":
		return func(r *http.Request) string {
			if id := identity.From(r.Context()); !id.Anonymous() {
				return id.Subject
			}
			return clientIP(r)
		}, nil
	case spec == "ip":
		return clientIP, nil
	case strings.HasPrefix(spec, "header:") && len(spec) > len("header:"):
		name := spec[len("header:"):]
		return func(r *http.Request) string {
			if v := r.Header.Get(name); v != "" {
				return v
			}
			return clientIP(r)
		}, nil
	}
	return nil, fmt.Errorf("%q: want subject, ip or header:NAME", spec)
}

// copyBuffers spares each proxied response a fresh 32 KiB copy buffer.
var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }

// retryable reports whether a request may be sent to another instance
// after a failure: idempotent methods, or any request carrying an
// Idempotency-Key.
func retryable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}

var errUpstream = errors.New("upstream answered 502/503/504")

// RoundTrip sends the request to a chosen instance, retrying connection
// errors and 502/503/504 on a different instance when that is safe.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.RemoteAddr
	if u.Key != nil {
		key = u.Key(req)
	}
	tries := 1
	if retryable(req) {
		tries = min(3, len(u.Instances))
	}
	tried := map[*Instance]bool{}
	var lastErr error
	for range tries {
		in, err := u.Balancer.Pick(key, tried)
		if err != nil {
			break
		}
		tried[in] = true
		// A shallow copy with its own URL: nothing below writes to the
		// headers (the tracing transport clones before it injects).
		out, url := *req, *req.URL
		out.URL = &url
		out.URL.Scheme, out.URL.Host = in.URL.Scheme, in.URL.Host
		if req.GetBody != nil {
			out.Body, _ = req.GetBody()
		}
		resp, err := u.breaker(in).Execute(func() (*http.Response, error) {
			done := in.Begin()
			defer done()
			resp, err := u.base.RoundTrip(&out)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout {
				return resp, errUpstream
			}
			return resp, nil
		})
		if req.Context().Err() == nil {
			// A caller that gave up says nothing about the instance.
			u.outcome(in, err)
		}
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if resp != nil {
			if len(tried) == tries {
				return resp, nil // out of instances: pass the upstream's answer on
			}
			resp.Body.Close()
		}
		if req.Context().Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = ErrNoInstance
	}
	return nil, lastErr
}

func (u *Upstream) breaker(in *Instance) *gobreaker.CircuitBreaker[*http.Response] {
	u.mu.Lock()
	defer u.mu.Unlock()
	b, ok := u.breakers[in]
	if !ok {
		b = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
			Name: in.URL.Host, Timeout: 10 * time.Second,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 5 },
			// Callers cancelling (a closed connection, the route's timeout
			// spent elsewhere) are not the instance failing.
			IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, context.Canceled) },
		})
		u.breakers[in] = b
	}
	return b
}

// outcome counts consecutive failures and ejects an instance after
// EjectAfter of them (passive health checking).
func (u *Upstream) outcome(in *Instance, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err == nil {
		u.failures[in] = 0
		return
	}
	u.failures[in]++
	if u.failures[in] >= EjectAfter {
		in.SetHealthy(false)
	}
}

// CheckHealth probes every instance's /readyz until ctx ends, putting
// ready instances back into rotation and taking others out: each interval
// while one is ready, every 250ms while none is (a gateway starting
// beside services that are still starting routes as soon as one is).
func (u *Upstream) CheckHealth(ctx context.Context, interval time.Duration) {
	for {
		if u.checkOnce(ctx) {
			u.checked.Store(true)
		}
		wait := interval
		if !u.Ready() {
			wait = min(interval, 250*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// checkOnce probes every instance once and says whether one is ready.
func (u *Upstream) checkOnce(ctx context.Context) (anyReady bool) {
	client := &http.Client{Timeout: time.Second, Transport: u.checks}
	for _, in := range u.Instances {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.URL.String()+"/readyz", nil)
		resp, err := client.Do(req)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			resp.Body.Close()
		}
		in.SetHealthy(ok)
		if ok {
			anyReady = true
			u.mu.Lock()
			u.failures[in] = 0
			u.mu.Unlock()
		}
	}
	return anyReady
}

// Ready says whether a health check has found an instance ready and one
// is in rotation now: until then the gateway could only answer 502 for
// this service, so it does not count itself ready (its /readyz).
func (u *Upstream) Ready() bool {
	if !u.checked.Load() {
		return false
	}
	for _, in := range u.Instances {
		if in.Healthy() {
			return true
		}
	}
	return false
}
