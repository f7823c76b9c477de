package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/sse"
)

// mountAPI puts the services' /api/ routes on mux behind the edge when
// this process is a gateway, or behind the check of the gateway's signed
// identity when the gateway is another process. The payment provider
// simulator's own API (/psp/v1/) is an outside system's: it is served here
// only by `serve psp`, and otherwise on a loopback listener of its own.
func (n *Node) mountAPI(ctx context.Context, mux *http.ServeMux) error {
	if n.pspAPI != nil && n.pspListener == nil {
		mux.Handle("/psp/", n.pspAPI)
	}
	if !slices.ContainsFunc(n.cfg.Services, isEdge) {
		if n.cfg.InternalSecret == "" {
			return errors.New("services behind a separate gateway need --internal-secret (the gateway's), so they can refuse requests that bypass it")
		}
		signer, err := identity.NewSigner([]byte(n.cfg.InternalSecret))
		if err != nil {
			return fmt.Errorf("--internal-secret: %w", err)
		}
		mux.Handle("/api/", identity.Require(signer, gateway.ExemptFromIdentity, n.api))
		return nil
	}
	edge, auth, err := n.edge(ctx, mux)
	if err != nil {
		return err
	}
	sessions := newConsoleSessions(n.cfg.InternalSecret, auth, edge, n.log.With("service", edgeService()))
	mux.Handle("/api/", sessions.credential(edge))
	n.mountConsole(mux)
	sessions.mount(mux)
	return nil
}

// edge builds the gateway: upstreams for the services in other processes,
// authentication, rate limits, the micro-cache.
// catalogCache is the gateway's micro-cache of catalog reads (nil with
// --cache-ttl 0). Any instance of inventory changing a product empties
// every gateway's cache: the event reaches core subscribers too. With no
// broker, an entry lives out its TTL.
func (n *Node) catalogCache() (*gateway.Cache, error) {
	if n.cfg.CacheTTL < 0 {
		return nil, nil
	}
	cache := gateway.NewCache(n.cfg.CacheTTL, 0)
	if n.rabbit != nil {
		n.purgeOnProductUpdates(cache)
		return cache, nil
	}
	if n.nc == nil {
		return cache, nil
	}
	for _, subject := range bus.TypeSubjects([]string{event.ProductUpdated}, -1) {
		sub, err := n.nc.Subscribe(subject, func(*nats.Msg) { cache.Purge() })
		if err != nil {
			return nil, fmt.Errorf("subscribe to product updates: %w", err)
		}
		n.onClose = append(n.onClose, func() { sub.Unsubscribe() })
	}
	return cache, nil
}

func (n *Node) edge(ctx context.Context, mux *http.ServeMux) (*gateway.Edge, *gateway.Authenticator, error) {
	upstreams, err := n.proxies(ctx)
	if err != nil {
		return nil, nil, err
	}
	auth, err := n.authenticator(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg := gateway.EdgeConfig{
		Routes: routes, Auth: auth, Limits: n.cfg.RateLimits, AllowOnLimiterError: n.cfg.RateLimitOnError != "deny",
		Concurrency: n.cfg.ConcurrencyLimits, Timeouts: n.cfg.RouteTimeouts, Logger: n.log.With("service", edgeService()),
	}
	if len(upstreams) > 0 {
		if n.cfg.InternalSecret == "" {
			return nil, nil, errors.New("a gateway with --upstream needs --internal-secret (32+ random bytes, shared with the services) to sign the caller's identity")
		}
		if cfg.Signer, err = identity.NewSigner([]byte(n.cfg.InternalSecret)); err != nil {
			return nil, nil, fmt.Errorf("--internal-secret: %w", err)
		}
	}
	// Limits are always on (gateway.DefaultLimits); Redis shares them.
	if n.cfg.RedisURL != "" {
		rl, rdb, err := gateway.NewRedisLimiter(n.cfg.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		n.onClose = append(n.onClose, func() { rdb.Close() })
		cfg.Limiter = rl
	} else {
		cfg.Limiter = gateway.NewLocalLimiter()
	}
	if cfg.Cache, err = n.catalogCache(); err != nil {
		return nil, nil, err
	}
	noUpstream := func(service string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "this gateway has no upstream for %s; start it with --upstream %s=URL", service, service))
		})
	}
	cfg.Backend = func(route gateway.Route) http.Handler {
		if isEdge(route.Service) || slices.Contains(n.cfg.Services, route.Service) {
			return n.api
		}
		if h, ok := upstreams[route.Service]; ok {
			return h
		}
		return noUpstream(route.Service)
	}
	return gateway.NewEdge(cfg), auth, nil
}

// upstreams builds a proxy for each --upstream service, each with its
// balancing policy (--lb), passive ejection, active health checks and
// retries on another instance where safe.
func (n *Node) proxies(ctx context.Context) (map[string]http.Handler, error) {
	handlers := map[string]http.Handler{}
	for svc, targets := range n.cfg.Upstreams {
		var instances []*gateway.Instance
		for _, t := range targets {
			in, err := gateway.NewInstance(t)
			if err != nil {
				return nil, fmt.Errorf("--upstream %s: %w", svc, err)
			}
			instances = append(instances, in)
		}
		up, err := gateway.NewUpstream(svc, n.cfg.Balance[svc], instances)
		if err != nil {
			return nil, fmt.Errorf("--lb %s: %w", svc, err)
		}
		up.Log = n.log.With("service", edgeService())
		if up.Key, err = gateway.HashKey(n.cfg.HashKeys[svc]); err != nil {
			return nil, fmt.Errorf("--hash-key %s: %w", svc, err)
		}
		handlers[svc] = up.Handler()
		n.upstreams = append(n.upstreams, up)
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			up.CheckHealth(ctx, 2*time.Second)
		}()
	}
	return handlers, nil
}

// DevTokenFile is where `run` writes its development admin token.
const DevTokenFile = "dev-admin.jwt"

// authenticator builds the gateway's credential checks. In embedded mode
// with no key configured it makes (once) a development signing key in the
// data directory and writes a fresh dev admin token beside it.
func (n *Node) authenticator(ctx context.Context) (*gateway.Authenticator, error) {
	cfg := n.cfg.Auth
	cfg.Logger = n.log
	for name, st := range n.stores {
		if isEdge(name) { // API keys are the edge's
			cfg.APIKeys = gateway.NewAPIKeys(st.db)
		}
	}
	if n.cfg.DataDir != "" && len(cfg.KeyFiles) == 0 && cfg.JWKSURL == "" && len(cfg.HS256Secret) == 0 {
		path, err := gateway.EnsureDevKey(n.cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("development signing key: %w", err)
		}
		key, err := gateway.LoadSigningKey(path)
		if err != nil {
			return nil, err
		}
		tok, err := gateway.Mint(key, gateway.TokenRequest{Subject: "dev-admin", Scopes: []string{identity.Admin}, TTL: 30 * 24 * time.Hour,
			Issuer: cfg.Issuer, Audience: cfg.Audience})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.cfg.DataDir, DevTokenFile), []byte(tok+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write dev token: %w", err)
		}
		n.DevToken = tok
		cfg.KeyFiles = []string{path}
	}
	return gateway.NewAuthenticator(ctx, cfg)
}

// firehose streams every event in EVENTS as Server-Sent Events: id = stream
// sequence, event = type, data = the CloudEvent in JSON (structured mode).
// Last-Event-ID (or ?after=SEQ) resumes from the broker's history;
// ?from=now starts with the next event instead of the first. ?type=T
// (repeatable) keeps only those event types.
func (n *Node) firehose(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := sse.LastEventID(r, q.Get("after"))
	if err != nil {
		httpx.Error(w, r, n.log, apperr.Invalidf("Last-Event-ID", "%v", err))
		return
	}
	opts := bus.TailOptions{After: uint64(after), Types: q["type"]}
	switch q.Get("from") {
	case "":
	case "now":
		opts.New = after == 0 // resuming with Last-Event-ID wins: nothing is skipped
	default:
		httpx.Error(w, r, n.log, apperr.Invalidf("from", "want from=now, got %q", q.Get("from")))
		return
	}
	for _, t := range opts.Types {
		if !slices.Contains(event.Types, t) {
			httpx.Error(w, r, n.log, apperr.Invalidf("type", "unknown event type %q (one of %s)", t, strings.Join(event.Types, ", ")))
			return
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var stream *sse.Writer
	stopKeepAlive := func() {}
	defer func() { stopKeepAlive() }() // before the handler returns: no write after it
	var startErr error
	// The answer starts once the broker's consumer exists, so a client that
	// has the headers of a from=now stream misses nothing published after.
	opts.Ready = func() {
		if stream, startErr = sse.Start(w); startErr != nil {
			stream = nil
			cancel()
			return
		}
		stopKeepAlive = stream.KeepAlive(ctx, 15*time.Second, cancel)
	}
	tailErr := n.broker.Tail(ctx, opts, func(seq uint64, ev bus.Event) error {
		data, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": ev.ID, "type": ev.Type, "source": ev.Source, "subject": ev.Subject,
			"time": ev.Time, "correlationid": ev.CorrelationID, "causationid": ev.CausationID, "data": ev.Data,
		})
		return stream.Event(strconv.FormatUint(seq, 10), ev.Type, data)
	})
	switch {
	case startErr != nil:
		httpx.Error(w, r, n.log, startErr)
	case stream == nil && tailErr != nil:
		httpx.Error(w, r, n.log, apperr.New(apperr.Unavailable, "", "the event stream is not available: %v", tailErr))
	case tailErr != nil && ctx.Err() == nil:
		n.log.Warn("firehose", "err", tailErr)
	}
}

// purgeOnProductUpdates empties cache at every product.updated on
// RabbitMQ, through a queue of the gateway's own (Tail), made again a
// second after the broker closed it; an entry lives out its TTL meanwhile.
func (n *Node) purgeOnProductUpdates(cache *gateway.Cache) {
	ctx, cancel := context.WithCancel(context.Background())
	n.onClose = append(n.onClose, cancel)
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		for ctx.Err() == nil {
			err := n.rabbit.Tail(ctx, bus.TailOptions{Types: []string{event.ProductUpdated}}, func(uint64, bus.Event) error {
				cache.Purge()
				return nil
			})
			if ctx.Err() == nil {
				n.log.Warn("catalog cache: product updates interrupted; listening again", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
}
