// Package app wires ordermesh together: `ordermesh run` (everything in one
// process on embedded NATS and SQLite) and `ordermesh serve SERVICE` (one
// service against external NATS and its own database). End-to-end tests
// start the same code through Start.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/every"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// Config is everything Start needs.
type Config struct {
	// Services to run. `run` runs all of them; `serve` one.
	Services []string
	// Addr is the HTTP listen address (":0" picks a free port).
	Addr string

	// DataDir, when set, means embedded mode: NATS JetStream under
	// DataDir/nats and one SQLite file per service, DataDir/<service>.db.
	DataDir string
	// NATSListen exposes the embedded broker on TCP (embedded mode only).
	NATSListen string

	// NATSURL is the external broker (serve mode).
	NATSURL string
	// NATSOptions authenticate to it (credentials, TLS).
	NATSOptions []nats.Option
	// DB is the service's database (serve mode): sqlite:PATH or postgres://…
	DB string
	// DSNs overrides the database of single services (e.g. PostgreSQL
	// schemas in tests while the rest runs embedded).
	DSNs map[string]string
	// Replicas of the streams on an external cluster (0: keep theirs), their
	// placement, and the EVENTS stream's storage cap (see bus.Config).
	Replicas       int
	Placement      *jetstream.Placement
	StreamMaxBytes int64
	// Partitioned runs every consumer as one durable consumer per
	// partition, each held by one instance at a time (bus.Config).
	Partitioned bool
	// StreamsTimeout bounds the wait for the broker to place the streams at
	// start (default 2m).
	StreamsTimeout time.Duration

	// MaxDeliver is the deliveries an event gets before it is dead-lettered.
	MaxDeliver int
	// OrderDeadline is how long an order may stay pending (default 30s).
	OrderDeadline time.Duration
	// PSP configures the payment-provider simulator's faults.
	PSP psp.Faults
	// PSPURL is where payments finds the provider; empty means this node.
	PSPURL string
	// PSPAsync makes the simulator answer authorizations "pending" and send
	// the outcome by webhook to payments.
	PSPAsync bool
	// PSPWebhookSecret signs the provider's webhooks (shared by psp and
	// payments); empty in embedded mode means a fresh one per start.
	PSPWebhookSecret string
	// PSPAPIKey is the provider API's credential: payments sends it, the
	// simulator requires it. Empty in embedded mode means a fresh one per
	// start.
	PSPAPIKey string
	// PSPNotifyURL is payments' base URL for the provider's webhooks
	// (serve psp); empty means this node.
	PSPNotifyURL string
	// Upstreams maps a service to its instances' base URLs (gateway).
	Upstreams map[string][]string
	// Balance maps a service to its balancing policy (gateway): round_robin
	// (default), weighted, least_conn, p2c or hash.
	Balance map[string]string
	// HashKeys maps a service to what its hash policy keys on: subject
	// (default), ip, or header:NAME.
	HashKeys map[string]string
	// PprofAddr, when set, serves net/http/pprof there.
	PprofAddr string
	// MetricsAddr, when set, serves Prometheus /metrics there: never on
	// the API listener, which anyone who can call the API reaches.
	MetricsAddr string
	// BodyTimeout bounds reading a whole request, body included, so a
	// client that stalls mid-body does not hold a connection (default 30s).
	BodyTimeout time.Duration
	// CORSOrigins are the browser origins allowed to call the API.
	CORSOrigins []string
	// Webhooks configures merchant webhook delivery (Logger, DB and Outbox
	// are filled in by the node).
	Webhooks webhook.Config
	// OutboxRetention is how long published outbox rows are kept.
	OutboxRetention time.Duration

	// Auth says which tokens the gateway accepts. With none configured in
	// embedded mode, a development key is made in DataDir and a dev admin
	// token written to DataDir/dev-admin.jwt.
	Auth gateway.AuthConfig
	// InternalSecret signs the caller's identity from the gateway to
	// services in other processes; services without a gateway in their
	// process require it.
	InternalSecret string
	// RateLimits per route class (gateway.Classes); RedisURL shares them
	// between gateway instances; RateLimitOnError is "allow" or "deny"
	// (default) when Redis cannot answer.
	RateLimits       map[string]gateway.Limit
	RedisURL         string
	RateLimitOnError string
	// ConcurrencyLimits cap requests in progress per route class.
	ConcurrencyLimits map[string]int
	// RouteTimeouts per route class (default 30s; streams have none).
	RouteTimeouts map[string]time.Duration
	// CacheTTL is the micro-cache's TTL for catalog reads (default 1s;
	// negative turns the cache off).
	CacheTTL time.Duration

	Logger *slog.Logger
}

// Node is a running ordermesh process.
type Node struct {
	cfg      Config
	log      *slog.Logger
	embedded *bus.Embedded
	nc       *nats.Conn
	Bus      *bus.Bus
	stores   map[string]*store
	consMu   sync.Mutex
	cons     []*bus.Consumer
	onClose  []func() // run first on Close
	http     *http.Server
	listener net.Listener
	httpDone chan error
	// pspListener is the provider simulator's own loopback listener in
	// embedded mode: an outside system's API never shares ordermesh's port.
	pspListener net.Listener
	relays      sync.WaitGroup
	stop        context.CancelFunc
	closing     sync.Once

	reg        *prometheus.Registry
	metrics    http.Handler
	metricsURL string
	// unlock releases the data directory (embedded mode), last in Close.
	unlock func()
	// pspAPI is the provider simulator's own API, when this node runs it.
	pspAPI http.Handler
	// api holds the services' /api/ routes, behind the edge (gateway in
	// this process) or the identity check (services behind a remote one).
	api *http.ServeMux
	// DevToken is the development admin token `run` made, if it made one.
	DevToken string
}

// store is one service's database, its outbox and the relay publishing it.
type store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

// platformMigrations are the tables every service database has.
func platformMigrations() []sqldb.Migrations {
	return []sqldb.Migrations{outbox.Migrations(), inbox.Migrations()}
}

// Start brings a node up: broker, streams, databases (migrated), outbox
// relays, HTTP. On error everything already started is closed again.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = bus.DefaultMaxDeliver
	}
	runCtx, stop := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: cfg.Logger, stores: map[string]*store{}, stop: stop}
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	n.reg = prometheus.NewRegistry()
	stopTracing, err := telemetry.Setup(ctx, "ordermesh "+strings.Join(cfg.Services, ","))
	if err != nil {
		return nil, err
	}
	n.onClose = append(n.onClose, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(ctx); err != nil {
			n.log.Warn("flush traces", "err", err)
		}
	})
	if err := n.connect(ctx); err != nil {
		return nil, err
	}
	for _, svc := range cfg.Services {
		if _, err := cfg.DSN(svc); err != nil && optionalDB(svc) {
			continue
		}
		if err := n.openStore(ctx, svc); err != nil {
			return nil, err
		}
	}
	if err := n.listen(); err != nil {
		return nil, err
	}
	if n.cfg.PSPWebhookSecret == "" {
		if n.cfg.PSPWebhookSecret, err = stdwebhook.NewSecret(); err != nil {
			return nil, err
		}
	}
	if err := n.listenPSP(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	n.api = http.NewServeMux()
	if err := n.startServices(ctx, runCtx, n.api); err != nil {
		return nil, err
	}
	if err := n.mountAPI(runCtx, mux); err != nil {
		return nil, err
	}
	for name, st := range n.stores {
		if name == "gateway" {
			continue // emits no events
		}
		relay := outbox.NewRelay(st.outbox, outbox.RelayConfig{Publisher: n.Bus, Retention: cfg.OutboxRetention, Logger: n.log})
		n.relays.Add(1)
		go func() {
			defer n.relays.Done()
			if err := relay.Run(runCtx); err != nil {
				n.log.Error("outbox relay stopped", "err", err)
			}
		}()
	}
	n.relays.Add(1)
	go func() {
		defer n.relays.Done()
		n.pruneInboxes(runCtx)
	}()
	n.serveHTTP(mux)
	if cfg.MetricsAddr != "" {
		if err := n.serveMetrics(cfg.MetricsAddr); err != nil {
			return nil, err
		}
	}
	if cfg.PprofAddr != "" {
		if err := n.servePprof(cfg.PprofAddr); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// servePprof serves the runtime profiles on their own listener, so they are
// never exposed on the API address by accident.
func (n *Node) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof %s: %w", addr, err)
	}
	// Sample blocking and lock contention too: that is where a pipeline
	// that is slow without being busy spends its time.
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	n.onClose = append(n.onClose, func() { srv.Close() })
	n.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// serveMetrics serves /metrics on a listener of its own (a Prometheus
// scrape port), apart from the API that clients reach.
func (n *Node) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go srv.Serve(ln)
	n.metricsURL = "http://" + ln.Addr().String() + "/metrics"
	n.onClose = append(n.onClose, func() { srv.Close() })
	return nil
}

// MetricsURL is where /metrics is served, or "" when it is not.
func (n *Node) MetricsURL() string { return n.metricsURL }

// InboxRetention is how long inbox records are kept: longer than the EVENTS
// stream's history, so any event the broker can still redeliver or replay
// is recognised as a duplicate.
const InboxRetention = bus.EventsMaxAge + 24*time.Hour

// pruneInboxes deletes expired inbox records of every store once an hour.
func (n *Node) pruneInboxes(ctx context.Context) {
	every.Run(ctx, time.Hour, func(ctx context.Context) {
		for name, st := range n.stores {
			if _, err := inbox.Prune(ctx, st.db, InboxRetention); err != nil && ctx.Err() == nil {
				n.log.Warn("prune inbox", "service", name, "err", err)
			}
		}
	})
}

func (n *Node) connect(ctx context.Context) error {
	var err error
	if n.cfg.DataDir != "" {
		if err := existingDir(n.cfg.DataDir, true); err != nil {
			return err
		}
		release, err := lockDataDir(n.cfg.DataDir, "run")
		if err != nil {
			return err
		}
		n.unlock = release
		password, err := embeddedPassword(n.cfg.DataDir)
		if err != nil {
			return err
		}
		n.embedded, err = bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(n.cfg.DataDir, "nats"), Listen: n.cfg.NATSListen,
			User: NATSUser, Password: password})
		if err != nil {
			return err
		}
		n.nc, err = n.embedded.Connect("ordermesh")
	} else {
		n.nc, err = bus.Dial(ctx, n.cfg.NATSURL, "ordermesh-"+fmt.Sprint(n.cfg.Services), n.cfg.NATSOptions...)
	}
	if err != nil {
		return err
	}
	schemas, err := event.LoadSchemas()
	if err != nil {
		return fmt.Errorf("event schemas: %w", err)
	}
	if n.Bus, err = bus.New(n.nc, bus.Config{Replicas: n.cfg.Replicas, Placement: n.cfg.Placement, MaxBytes: n.cfg.StreamMaxBytes,
		Partitioned: n.cfg.Partitioned, Metrics: n.reg, Logger: n.log, Validate: schemas.Validate}); err != nil {
		return err
	}
	timeout := n.cfg.StreamsTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.Bus.EnsureStreams(sctx)
}

// DSN is the database a service uses under cfg.
func (cfg Config) DSN(service string) (string, error) {
	if dsn, ok := cfg.DSNs[service]; ok {
		return dsn, nil
	}
	if cfg.DataDir != "" {
		return "sqlite:" + filepath.Join(cfg.DataDir, service+".db"), nil
	}
	if cfg.DB == "" {
		return "", fmt.Errorf("service %s needs a database: pass --db sqlite:PATH or --db postgres://USER:PASS@HOST/DB", service)
	}
	return cfg.DB, nil
}

func (n *Node) openStore(ctx context.Context, service string) error {
	dsn, err := n.cfg.DSN(service)
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("%s database: %w", service, err)
	}
	if err := db.Migrate(ctx, migrationsOf(service)...); err != nil {
		db.Close()
		return fmt.Errorf("%s database: %w", service, err)
	}
	n.stores[service] = &store{db: db, outbox: outbox.New(db)}
	return nil
}

// ConsumeBatch starts a durable consumer whose events are handled in
// batches, with the node's --max-deliver; Close drains it before the
// outbox relays flush, so events its handlers commit are still published.
func (n *Node) ConsumeBatch(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) error {
	_, err := n.consumeBatch(ctx, cfg, h)
	return err
}

func (n *Node) consumeBatch(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) (*bus.Consumer, error) {
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = n.cfg.MaxDeliver
	}
	c, err := n.Bus.ConsumeBatch(ctx, cfg, h)
	if err != nil {
		return nil, err
	}
	n.consMu.Lock()
	n.cons = append(n.cons, c)
	n.consMu.Unlock()
	return c, nil
}

// URL is the node's HTTP base URL.
func (n *Node) URL() string {
	addr := n.listener.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(addr.Port)))
}

// NATSURL is the broker's TCP URL with the embedded broker's credentials
// in it, or "" for an in-process-only broker.
func (n *Node) NATSURL() string {
	if n.embedded != nil {
		return n.embedded.ClientURLWithCredentials()
	}
	return n.cfg.NATSURL
}

func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using it? pick another with --addr)", n.cfg.Addr, err)
	}
	n.listener = ln
	return nil
}

// listenPSP gives the provider simulator of an embedded node a listener
// of its own on loopback, and a fresh API key unless one is configured.
// A simulator served alone (serve psp) answers on the node's address and
// must be given its key.
func (n *Node) listenPSP() error {
	if !slices.Contains(n.cfg.Services, "psp") {
		return nil
	}
	if n.cfg.PSPAPIKey == "" && n.cfg.DataDir != "" {
		key, err := stdwebhook.NewSecret()
		if err != nil {
			return err
		}
		n.cfg.PSPAPIKey = strings.TrimPrefix(key, "whsec_")
	}
	if n.cfg.PSPAPIKey == "" {
		return errors.New("serve psp needs --psp-api-key (the provider's API key, shared with serve payments)")
	}
	if n.cfg.DataDir == "" {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the payment-provider simulator: %w", err)
	}
	n.pspListener = ln
	n.onClose = append(n.onClose, func() { ln.Close() })
	return nil
}

// pspURL is where this node's payments service finds the provider.
func (n *Node) pspURL() (string, error) {
	switch {
	case n.cfg.PSPURL != "":
		return n.cfg.PSPURL, nil
	case n.pspListener != nil:
		return "http://" + n.pspListener.Addr().String(), nil
	}
	return "", errors.New("payments needs the provider's URL: pass --psp-url")
}

// outboxGauge is a gauge of service's outbox, read at scrape time (-1 when
// the database cannot answer within 2 s).
func outboxGauge(service, name, help string, read func(context.Context) (float64, error)) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"service": service}},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			v, err := read(ctx)
			if err != nil {
				return -1
			}
			return v
		})
}

func (n *Node) serveHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", n.ready)
	reg := n.reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := httpx.NewMetrics(reg)
	for name, st := range n.stores {
		if name == "gateway" {
			continue
		}
		reg.MustRegister(
			outboxGauge(name, "ordermesh_outbox_oldest_unsent_seconds", "Age of the oldest outbox row not yet published to the broker (0 when none).",
				func(ctx context.Context) (float64, error) {
					age, err := st.outbox.OldestUnsent(ctx, time.Now())
					return age.Seconds(), err
				}),
			outboxGauge(name, "ordermesh_outbox_backlog", "Outbox rows committed and not yet published to the broker.",
				func(ctx context.Context) (float64, error) {
					n, err := st.outbox.Pending(ctx)
					return float64(n), err
				}))
	}
	reg.MustRegister(outbox.StepSeconds)
	n.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	routeOf := func(r *http.Request) string {
		if _, p := n.api.Handler(r); p != "" {
			return p
		}
		if route, ok := gateway.Classify(r); ok {
			return "gateway " + route.Class
		}
		_, p := mux.Handler(r)
		return p
	}
	bodyTimeout := n.cfg.BodyTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = 30 * time.Second
	}
	// ReadTimeout covers the body too; net/http lifts it once a handler has
	// read the whole request, so streams and long polls are not cut.
	n.http = &http.Server{Handler: telemetry.Handler(httpx.CORS(n.cfg.CORSOrigins, httpx.Observe(mux, routeOf, n.log, metrics)), routeOf),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: bodyTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	n.httpDone = make(chan error, 1)
	go func() { n.httpDone <- n.http.Serve(n.listener) }()
}

// MaxOutboxLag is how old the oldest unpublished outbox row may be before
// /readyz reports the node not ready.
const MaxOutboxLag = 30 * time.Second

// ready answers 200 when the broker is connected, every database answers
// and every outbox is being published, else 503 with what is wrong.
func (n *Node) ready(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"nats": "ok"}
	status := http.StatusOK
	if !n.nc.IsConnected() {
		checks["nats"] = "disconnected: " + n.nc.Status().String()
		status = http.StatusServiceUnavailable
	}
	for name, st := range n.stores {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		var one int
		if err := st.db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			checks[name+"_db"] = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			checks[name+"_db"] = "ok"
		}
		if name != "gateway" {
			// A relay that cannot publish leaves rows waiting: the
			// services' events stop flowing, so this instance is not ready.
			switch age, err := st.outbox.OldestUnsent(ctx, time.Now()); {
			case err != nil:
				checks[name+"_outbox"] = err.Error()
				status = http.StatusServiceUnavailable
			case age > MaxOutboxLag:
				checks[name+"_outbox"] = fmt.Sprintf("the oldest unpublished event is %s old; the relay cannot publish", age.Round(time.Second))
				status = http.StatusServiceUnavailable
			default:
				checks[name+"_outbox"] = "ok"
			}
		}
		cancel()
	}
	writeJSON(w, status, checks)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Close shuts down in order: stop HTTP intake, drain the consumers, stop
// the relays (each flushes its outbox), close the databases, drain the connection, stop the
// embedded broker. ctx bounds the HTTP shutdown.
func (n *Node) Close(ctx context.Context) error {
	var errs []error
	n.closing.Do(func() {
		for _, f := range n.onClose {
			f()
		}
		if n.http != nil {
			// In-flight requests get up to 3s (or ctx's deadline) to finish.
			// After that the rest is closed: net/http counts a connection that
			// never sent a request as idle only after 5s, so waiting for those
			// would only stall the shutdown.
			hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			if err := n.http.Shutdown(hctx); err != nil {
				n.http.Close()
			}
			cancel()
			if err := <-n.httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		n.consMu.Lock()
		for _, c := range n.cons {
			c.Stop()
		}
		n.consMu.Unlock()
		n.stop()
		n.relays.Wait()
		for name, st := range n.stores {
			if err := st.db.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s db: %w", name, err))
			}
		}
		if n.nc != nil {
			if err := n.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				errs = append(errs, fmt.Errorf("drain nats: %w", err))
			}
			for deadline := time.Now().Add(5 * time.Second); !n.nc.IsClosed() && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if n.embedded != nil {
			n.embedded.Shutdown()
		}
		if n.unlock != nil {
			n.unlock()
		}
	})
	return errors.Join(errs...)
}
