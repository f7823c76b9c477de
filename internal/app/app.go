// Package app wires ordermesh together: `ordermesh run` (everything in one
// process on embedded NATS and SQLite) and `ordermesh serve SERVICE` (one
// service against external NATS and its own database). End-to-end tests
// start the same code through Start.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
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
	// PSPListen is where an embedded node's provider simulator listens
	// (default 127.0.0.1:0, any free loopback port).
	PSPListen string

	// NATSURL is the external broker (serve mode).
	NATSURL string
	// BrokerURL, when set, is the RabbitMQ broker (amqp://...) that
	// replaces NATS: run starts no embedded NATS, serve needs no --nats.
	BrokerURL string
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
	// ConsumerMemory keeps the consumers' state in the brokers' memory
	// (bus.Config).
	ConsumerMemory bool
	// ConsumerReplicas is how many brokers keep each consumer's state on
	// the EVENTS stream; 0 follows the stream (bus.Config).
	ConsumerReplicas int
	// StreamsTimeout bounds the wait for the broker to place the streams at
	// start (default 2m).
	StreamsTimeout time.Duration

	// MaxDeliver is the deliveries an event gets before it is dead-lettered.
	MaxDeliver int
	// Orders, Payments, PSP and Webhooks are those components' own
	// settings (their flags; the node fills in their stores). In one process
	// payments and the simulator share the provider's credentials, made
	// at each start unless given.
	Orders   order.Config
	Payments payment.Config
	PSP      psp.Config
	Webhooks webhook.Config
	// Gateway is the edge's flags, as given: config applies them to the
	// fields above (Auth, RateLimits, CacheTTL, …).
	Gateway gatewayFlags
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
	Bus      *bus.Bus // nil on RabbitMQ
	// broker is the node's broker, whichever the engine: Bus, or rabbit.
	broker bus.Broker
	rabbit *rabbitmq.Broker
	// buses are the services' own buses in an embedded node, each over a
	// connection with that service's broker identity (busFor).
	buses   map[string]*bus.Bus
	stores  map[string]*store
	consMu  sync.Mutex
	cons    []bus.Subscription
	onClose []func() // run first on Close
	// flushTraces runs last on Close: the spans of handlers and relays
	// that end during the shutdown are exported too.
	flushTraces func()
	http        *http.Server
	listener    net.Listener
	httpDone    chan error
	// pspListener is the provider simulator's own loopback listener in
	// embedded mode: an outside system's API never shares ordermesh's port.
	pspListener net.Listener
	loops       sync.WaitGroup // background loops: outbox relays, inbox pruning, deadlines, notifiers
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
	// upstreams are the gateway's proxied services (serve gateway); it is
	// ready once each has an instance ready.
	upstreams []*gateway.Upstream
	// DevToken is the development admin token `run` made, if it made one.
	DevToken string
}

// withDefaults fills what cfg leaves unset.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = bus.DefaultMaxDeliver
	}
	return cfg
}

// Start brings a node up: broker, streams, databases (migrated), outbox
// relays, HTTP. On error everything already started is closed again.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg = cfg.withDefaults()
	runCtx, stop := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: cfg.Logger, stores: map[string]*store{}, stop: stop}
	defer func() {
		if err != nil {
			n.Close(context.Background())
		}
	}()
	n.reg = prometheus.NewRegistry()
	if err := n.setupTracing(ctx); err != nil {
		return nil, err
	}
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
	if err := n.shareProvider(); err != nil {
		return nil, err
	}
	if err := n.sealPaymentTokens(); err != nil {
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
	n.startRelays(runCtx)
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

// setupTracing starts OpenTelemetry for this process and flushes it on
// Close.
func (n *Node) setupTracing(ctx context.Context) error {
	// One service: ordermesh-orders and so on. Several in one process
	// (run): one resource, ordermesh, for one tracer provider; each span
	// says what it is about (event types, consumers, routes).
	service := "ordermesh"
	if len(n.cfg.Services) == 1 {
		service += "-" + n.cfg.Services[0]
	}
	stopTracing, err := telemetry.Setup(ctx, telemetry.Process{Service: service, Version: Version, Logger: n.log})
	if err != nil {
		return err
	}
	n.flushTraces = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(ctx); err != nil {
			n.log.Warn("flush traces", "err", err)
		}
	}
	return nil
}

// startRelays starts each store's outbox relay and the inbox pruning; they
// end with runCtx.
func (n *Node) startRelays(runCtx context.Context) {
	for name, st := range n.stores {
		if !emits(name) {
			continue
		}
		relay := outbox.NewRelay(st.outbox, outbox.RelayConfig{Publisher: n.busFor(name), Retention: n.cfg.OutboxRetention, Logger: n.log})
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			if err := relay.Run(runCtx); err != nil {
				n.log.Error("outbox relay stopped", "err", err)
			}
		}()
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		n.pruneInboxes(runCtx)
	}()
}

// Close shuts down in order: stop HTTP intake, drain the consumers, stop
// the relays (each flushes its outbox), close the databases, drain the
// connection, stop the embedded broker, and last export the spans left.
// ctx bounds the HTTP shutdown.
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
		n.loops.Wait()
		for name, st := range n.stores {
			if err := st.db.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s db: %w", name, err))
			}
		}
		for _, b := range n.buses {
			b.Conn().Drain()
		}
		if n.nc != nil {
			if err := n.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				errs = append(errs, fmt.Errorf("drain nats: %w", err))
			}
			for deadline := time.Now().Add(5 * time.Second); !n.nc.IsClosed() && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if n.rabbit != nil {
			n.rabbit.Close()
		}
		if n.embedded != nil {
			n.embedded.Shutdown()
		}
		if n.flushTraces != nil {
			n.flushTraces()
		}
		if n.unlock != nil {
			n.unlock()
		}
	})
	return errors.Join(errs...)
}
