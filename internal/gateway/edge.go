package gateway

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Route is the gateway's policy for a class of requests.
type Route struct {
	// Class names the route for rate limits, concurrency limits and
	// timeouts: catalog, catalog:write, orders:read, orders:write, admin,
	// provider.
	Class string
	// Scope is required of the caller; "" means public.
	Scope string
	// Service answers the route.
	Service string
	// Cache marks public GETs the micro-cache may answer.
	Cache bool
	// Stream marks long-lived answers (SSE, long polls) that no route
	// timeout applies to.
	Stream bool
	// Pattern is the ServeMux pattern the route is declared with, such as
	// "POST /api/orders/{id}/cancel": its name in spans and metrics.
	Pattern string
}

// Classes are the route classes limits and timeouts may name, and
// ClassAuthFailures, the failed authentications from one client address.
var Classes = []string{"catalog", "catalog:write", "orders:read", "orders:write", "admin", "provider", ClassAuthFailures, ClassAuthFailuresAll}

// ClassAuthFailures limits failed authentications per client address and
// per API-key prefix; ClassAuthFailuresAll, from all clients together.
const (
	ClassAuthFailures    = "auth:failures"
	ClassAuthFailuresAll = "auth:failures:all"
)

// DefaultLimits apply when no limit is configured for a class: every
// customer's order writes (admin callers, such as the load generator, are
// exempt from the defaults), and failed authentications per address.
var DefaultLimits = map[string]Limit{
	"orders:write":       {Rate: 600, Period: time.Minute, Burst: 60},
	ClassAuthFailures:    {Rate: 20, Period: time.Minute, Burst: 10},
	ClassAuthFailuresAll: {Rate: 60, Period: time.Minute, Burst: 30},
}

// ExemptFromIdentity names the paths services accept without the
// gateway's signed identity: those that authenticate themselves.
func ExemptFromIdentity(path string) bool { return path == "/api/psp/webhooks" }

// EdgeConfig is what the edge enforces.
type EdgeConfig struct {
	// Routes classifies requests: which service, class, scope (required).
	Routes *Routes
	Auth   *Authenticator
	// Limits per route class, beside DefaultLimits; Limiter applies them
	// (nil: an in-process one).
	Limits  map[string]Limit
	Limiter RateLimiter
	// OnLimiterError: true lets requests through when the limiter fails
	// (Redis down), false refuses them with 503.
	AllowOnLimiterError bool
	// Concurrency caps requests in progress per route class.
	Concurrency map[string]int
	// Timeouts per route class (streams excepted); DefaultTimeout else.
	Timeouts       map[string]time.Duration
	DefaultTimeout time.Duration
	// Cache answers cacheable routes; nil: no caching.
	Cache *Cache
	// Signer signs the identity for services in other processes; nil when
	// the services run in this process (the identity rides in the context).
	Signer *identity.Signer
	// Backend answers a route after the edge let it through.
	Backend func(Route) http.Handler
	Logger  *slog.Logger
}

// Edge is the gateway's front: authentication, authorization, rate and
// concurrency limits, timeouts and caching, before Backend.
type Edge struct {
	cfg   EdgeConfig
	slots map[string]chan struct{}
	// limiterWarned is when the limiter's failure was last logged (unix
	// ns): once per 10s, not once per request.
	limiterWarned atomic.Int64
	// blocked are client addresses over the failed-authentication limit,
	// with when they may try again: their credentials are not even
	// checked until then.
	blockedMu sync.Mutex
	blocked   map[string]time.Time
}

// NewEdge returns the edge for cfg.
func NewEdge(cfg EdgeConfig) *Edge {
	if cfg.Routes == nil {
		panic("gateway.NewEdge: EdgeConfig.Routes is required (the services' route table, gateway.NewRoutes)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = 30 * time.Second
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLocalLimiter()
	}
	e := &Edge{cfg: cfg, slots: map[string]chan struct{}{}, blocked: map[string]time.Time{}}
	for class, n := range cfg.Concurrency {
		e.slots[class] = make(chan struct{}, n)
	}
	return e
}

func (e *Edge) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Error(w, r, e.cfg.Logger, err)
}

// ServeHTTP applies the edge's policies to one /api/ request.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Whatever identity a client claims is not the gateway's to forward.
	r.Header.Del(identity.Header)
	route, ok := RouteOf(r)
	if !ok {
		route, ok = e.cfg.Routes.Classify(r)
	}
	if !ok {
		e.noRoute(w, r)
		return
	}
	nameOrder(route, r)
	if r.ContentLength > httpx.MaxBody {
		e.fail(w, r, apperr.New(apperr.TooLarge, "", "body is larger than %d bytes", httpx.MaxBody))
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, httpx.MaxBody)
	}
	if r.Header.Get("Authorization") != "" && e.isBlocked(w, r) {
		return
	}
	id, ok := e.authorize(w, r, route)
	if !ok || !e.admit(w, r, route, id) {
		return
	}
	if slots, ok := e.slots[route.Class]; ok {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", "1")
			e.fail(w, r, apperr.New(apperr.Unavailable, "", "too many %s requests in progress (limit %d); retry shortly", route.Class, cap(slots)))
			return
		}
	}
	if !route.Stream {
		timeout, ok := e.cfg.Timeouts[route.Class]
		if !ok {
			timeout = e.cfg.DefaultTimeout
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	if e.cfg.Signer != nil {
		r.Header.Set(identity.Header, e.cfg.Signer.Sign(id))
	}
	r = r.WithContext(identity.With(r.Context(), id))
	next := e.cfg.Backend(route)
	if e.cfg.Cache != nil {
		if route.Cache && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			e.cfg.Cache.Serve(w, r, next)
			return
		}
		if route.Class == "catalog:write" {
			// Read your writes through this gateway at once; the others
			// purge on the product.updated event.
			defer e.cfg.Cache.Purge()
		}
	}
	next.ServeHTTP(w, r)
}

// noRoute answers a request no route declares: 405 with the methods its
// path has, or 404.
func (e *Edge) noRoute(w http.ResponseWriter, r *http.Request) {
	if allowed := e.cfg.Routes.Allowed(r); len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		e.fail(w, r, apperr.New(apperr.MethodNotAllowed, "", "%s %s: use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
		return
	}
	e.fail(w, r, apperr.New(apperr.NotFound, "", "no API route %s %s", r.Method, r.URL.Path))
}

// authorize authenticates the caller and checks the route's scope. When it
// reports false it has answered the request.
func (e *Edge) authorize(w http.ResponseWriter, r *http.Request, route Route) (identity.Identity, bool) {
	id, err := e.cfg.Auth.Authenticate(r)
	if err != nil {
		if apperr.KindOf(err) == apperr.Unauthorized && !e.admitFailure(w, r) {
			return id, false
		}
		if apperr.KindOf(err) == apperr.Unauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ordermesh", error="invalid_token", error_description=`+strconv.Quote(oneLine(err.Error())))
		}
		e.fail(w, r, err)
		return id, false
	}
	if route.Scope == "" {
		return id, true
	}
	if id.Anonymous() {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ordermesh", scope="`+route.Scope+`"`)
		e.fail(w, r, apperr.New(apperr.Unauthorized, "Authorization", "this route needs a bearer token or API key with scope %s", route.Scope))
		return id, false
	}
	if !id.Has(route.Scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ordermesh", error="insufficient_scope", scope="`+route.Scope+`"`)
		e.fail(w, r, apperr.New(apperr.Forbidden, "", "%s lacks scope %s (has: %s)", id.Subject, route.Scope, strings.Join(id.Scopes, " ")))
		return id, false
	}
	return id, true
}

// limit is the limit of class: the configured one, else the default
// (which admin callers are exempt from).
func (e *Edge) limit(class string, id identity.Identity) (Limit, bool) {
	if lim, ok := e.cfg.Limits[class]; ok {
		return lim, true
	}
	if id.Has(identity.Admin) {
		return Limit{}, false
	}
	lim, ok := DefaultLimits[class]
	return lim, ok
}

// clientHost is the client's address without its port.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// admit applies the route class's rate limit to the caller, setting the
// RateLimit-Policy and RateLimit headers, and answers 429 when over it.
func (e *Edge) admit(w http.ResponseWriter, r *http.Request, route Route, id identity.Identity) bool {
	lim, ok := e.limit(route.Class, id)
	if !ok {
		return true
	}
	d, err := e.cfg.Limiter.Allow(r.Context(), route.Class+"|"+callerKey(r, id), lim)
	if err != nil {
		now := time.Now().UnixNano()
		if last := e.limiterWarned.Load(); now-last > int64(10*time.Second) && e.limiterWarned.CompareAndSwap(last, now) {
			e.cfg.Logger.Warn("rate limiter unavailable; requests are "+map[bool]string{true: "let through (--rate-limit-on-error=allow)", false: "refused with 503 (--rate-limit-on-error=deny)"}[e.cfg.AllowOnLimiterError], "err", err)
		}
		if e.cfg.AllowOnLimiterError {
			return true
		}
		w.Header().Set("Retry-After", "1")
		e.fail(w, r, apperr.New(apperr.Unavailable, "", "rate limiter unavailable; retry shortly"))
		return false
	}
	setRateLimitFields(w.Header(), route.Class, lim, d)
	if d.Allowed {
		return true
	}
	RateLimited.WithLabelValues(route.Class).Inc()
	e.fail(w, r, apperr.New(apperr.TooManyRequests, "", "rate limit for %s is %d per %s; retry in %s", route.Class, lim.Rate, lim.Period, d.RetryAfter.Round(time.Millisecond)))
	return false
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// callerKey is whom a rate limit counts: the API key, else the token's
// subject, else the client's address.
func callerKey(r *http.Request, id identity.Identity) string {
	switch {
	case id.KeyID != "":
		return "key:" + id.KeyID
	case !id.Anonymous():
		return "sub:" + id.Subject
	}
	return "ip:" + clientHost(r)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func init() { RateLimited.WithLabelValues(ClassAuthFailures) }

// RateLimited counts requests refused with 429 by a rate limit, by route
// class (auth:failures for addresses blocked after failed sign-ins).
var RateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "ordermesh_ratelimit_rejections_total",
	Help: "Requests refused with 429 by a rate limit, by route class (auth:failures: an address or API-key prefix over the failed-authentication limit; auth:failures:all: all clients together, a credential-guessing attack from many addresses).",
}, []string{"class"})
