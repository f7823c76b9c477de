package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/psp"
)

const mainUsage = `ordermesh — event-driven order processing on NATS JetStream

Usage:
  ordermesh run [flags]              everything in one process: embedded NATS JetStream + SQLite
  ordermesh serve SERVICE [flags]    one service against external NATS and its own database
                                     (SERVICE: orders, inventory, payments, shipping,
                                     notifications, psp, gateway)
  ordermesh setup --nats URL [--replicas 3]
                                     create or update the broker's streams, waiting until the
                                     cluster can place them (also done on start)
  ordermesh migrate [flags]          apply database migrations (also done on start)
  ordermesh dlq list|show ID|replay ID...|replay --all|purge --yes
                                     inspect and replay dead letters
  ordermesh load [--rate N --duration D | --max]
                                     load generator: throughput, latency, invariants
  ordermesh token --sub ID --scopes SCOPES
                                     mint a JWT with the dev key of 'run' (or --key FILE)
  ordermesh apikey create|list|revoke
                                     API keys (om_…), stored as SHA-256 hashes
  ordermesh version

Run 'ordermesh COMMAND --help' for a command's flags. Every flag can also be
set in the environment as ORDERMESH_<FLAG>, e.g. ORDERMESH_DATA=/var/lib/ordermesh.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage.
`

// Version is the build's version, set with -ldflags "-X …app.Version=…".
var Version = "dev"

// Main runs the ordermesh command line (args without the program name)
// and returns the process exit code. ctx is cancelled on SIGINT/SIGTERM.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "ordermesh: %v\n", err)
		fmt.Fprintln(stderr, "Run 'ordermesh --help' for usage.")
		return 2
	default:
		fmt.Fprintf(stderr, "ordermesh: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "setup":
		return cmdSetup(ctx, rest, stdout, stderr)
	case "dlq":
		return cmdDLQ(ctx, rest, stdout, stderr)
	case "load":
		return cmdLoad(ctx, rest, stdout, stderr)
	case "token":
		return cmdToken(ctx, rest, stdout, stderr)
	case "apikey":
		return cmdAPIKey(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "ordermesh", Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	default:
		return usagef("unknown command %q (commands: run, serve, setup, migrate, dlq, load, token, apikey, version)", cmd)
	}
}

// commonFlags are the flags shared by run and serve.
type commonFlags struct {
	addr, logLevel, logFormat string
	pprof, metrics            string
	bodyTimeout               time.Duration
	cors                      string
	maxDeliver                int
	shutdown                  time.Duration
	retention                 time.Duration
	orderDeadline             time.Duration
	psp                       psp.Faults
	webhooks                  webhook.Config
	schedule                  scheduleFlag
	pspAsync                  bool
	pspSecret                 string
	pspAPIKey                 string
}

// register adds the shared flags; run listens on loopback by default (a
// development default), serve on every interface (it runs behind a
// gateway or in a container).
func (c *commonFlags) register(defaultAddr, defaultMetrics string, fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	Float64Var(*float64, string, float64, string)
	BoolVar(*bool, string, bool, string)
	Var(flag.Value, string, string)
}) {
	fs.StringVar(&c.addr, "addr", defaultAddr, "HTTP listen address (0.0.0.0:8080 or :8080 for every interface)")
	fs.StringVar(&c.metrics, "metrics-addr", defaultMetrics, "serve Prometheus /metrics on this address, apart from the API (empty: off)")
	fs.DurationVar(&c.bodyTimeout, "read-timeout", 30*time.Second, "longest time to read a request, body included (slow clients are cut off)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text (key=value) or json (one object per line, for log collectors)")
	fs.StringVar(&c.cors, "cors-origin", "", "comma-separated browser origins allowed to call the API (e.g. https://shop.example)")
	fs.StringVar(&c.pprof, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060) for profiling")
	fs.IntVar(&c.maxDeliver, "max-deliver", bus.DefaultMaxDeliver, "deliveries of an event before it is dead-lettered")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.DurationVar(&c.retention, "outbox-retention", time.Hour, "how long published outbox rows are kept")
	fs.DurationVar(&c.orderDeadline, "order-deadline", 30*time.Second, "orders not confirmed by then are cancelled with reason timeout")
	fs.Float64Var(&c.psp.ErrorRate, "psp-error-rate", 0, "payment-provider simulator: share of requests answered 503 (0-1)")
	fs.Float64Var(&c.psp.TimeoutRate, "psp-timeout-rate", 0, "payment-provider simulator: share of requests that hang past the client's timeout (0-1)")
	fs.DurationVar(&c.psp.Latency, "psp-latency", 0, "payment-provider simulator: latency added to every request")
	fs.BoolVar(&c.pspAsync, "psp-async", false, "payment-provider simulator: answer authorizations pending and send the outcome by signed webhook")
	fs.StringVar(&c.pspSecret, "psp-webhook-secret", "", "whsec_ secret signing the provider's webhooks (serve psp and serve payments must share it; run makes one)")
	fs.StringVar(&c.pspAPIKey, "psp-api-key", "", "the payment provider's API key: serve psp requires it from callers, serve payments sends it (run makes one)")
	fs.Var(&c.schedule, "webhook-schedule", "webhook retry schedule: delays before each attempt, e.g. 0s,5s,5m,30m (default: the Standard Webhooks schedule, 0s to 24h)")
	fs.DurationVar(&c.webhooks.SecretGrace, "webhook-secret-grace", 24*time.Hour, "how long a rotated-out webhook secret keeps signing")
	fs.DurationVar(&c.webhooks.DisableAfter, "webhook-disable-after", 5*24*time.Hour, "disable a webhook endpoint failing continuously this long")
	fs.BoolVar(&c.webhooks.AllowPrivate, "webhook-allow-private", false, "let webhook endpoints be loopback or private addresses (local use only)")
}

func (c *commonFlags) origins() []string {
	var out []string
	for _, o := range strings.Split(c.cors, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func (c *commonFlags) validate() error {
	if c.maxDeliver < 1 {
		return usagef("--max-deliver must be at least 1, got %d", c.maxDeliver)
	}
	if c.shutdown <= 0 {
		return usagef("--shutdown-timeout must be positive")
	}
	if c.orderDeadline < time.Second {
		return usagef("--order-deadline must be at least 1s, got %s", c.orderDeadline)
	}
	if c.psp.ErrorRate < 0 || c.psp.ErrorRate > 1 {
		return usagef("--psp-error-rate must be between 0 and 1, got %g", c.psp.ErrorRate)
	}
	if c.psp.TimeoutRate < 0 || c.psp.TimeoutRate > 1 {
		return usagef("--psp-timeout-rate must be between 0 and 1, got %g", c.psp.TimeoutRate)
	}
	if c.psp.Latency < 0 {
		return usagef("--psp-latency must not be negative")
	}
	if c.webhooks.SecretGrace <= 0 || c.webhooks.DisableAfter <= 0 {
		return usagef("--webhook-secret-grace and --webhook-disable-after must be positive")
	}
	c.webhooks.Schedule = c.schedule
	return nil
}

func (c *commonFlags) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, usagef("--log-format %q: use text or json", c.logFormat)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "Usage: ordermesh run [flags]\n\nRuns every ordermesh service in one process on embedded NATS JetStream\n(file store under DATA/nats) and one SQLite database per service (DATA/<service>.db).", stderr)
	var c commonFlags
	c.register("127.0.0.1:8080", "127.0.0.1:9090", fs)
	var g gatewayFlags
	g.register(fs)
	data := fs.String("data", "./data", "data directory (NATS store, SQLite files)")
	natsListen := fs.String("nats-listen", "", "also expose the embedded NATS on this TCP address, e.g. 127.0.0.1:4222 (for ordermesh dlq)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	cfg := Config{
		Services: Services, Addr: c.addr, DataDir: *data, NATSListen: *natsListen,
		MaxDeliver: c.maxDeliver, OutboxRetention: c.retention, Logger: log,
		OrderDeadline: c.orderDeadline, PSP: c.psp, PprofAddr: c.pprof, MetricsAddr: c.metrics, BodyTimeout: c.bodyTimeout, Webhooks: c.webhooks,
		PSPAsync: c.pspAsync, PSPWebhookSecret: c.pspSecret, PSPAPIKey: c.pspAPIKey, CORSOrigins: c.origins(),
	}
	if err := g.apply(&cfg); err != nil {
		return err
	}
	return runUntilSignal(ctx, cfg, c.shutdown, func(n *Node) {
		fmt.Fprintf(stdout, "ordermesh %s running\n", Version)
		fmt.Fprintf(stdout, "  HTTP:   %s   (health: %s/livez, %s/readyz)\n", n.URL(), n.URL(), n.URL())
		if u := n.MetricsURL(); u != "" {
			fmt.Fprintf(stdout, "  Metrics: %s\n", u)
		}
		if u := n.embedded.ClientURL(); u != "" {
			fmt.Fprintf(stdout, "  NATS:   %s   (user %s, password in %s)\n", u, NATSUser, filepath.Join(*data, NATSPasswordFile))
			fmt.Fprintf(stdout, "          try: ordermesh dlq list --nats nats://%s:$(cat %s)@%s\n", NATSUser, filepath.Join(*data, NATSPasswordFile), strings.TrimPrefix(u, "nats://"))
		} else {
			fmt.Fprintf(stdout, "  NATS:   embedded, in-process only (add --nats-listen 127.0.0.1:4222 to expose it)\n")
		}
		fmt.Fprintf(stdout, "  Data:   %s\n", *data)
		auth := "-H \"Authorization: Bearer $TOKEN\""
		if n.DevToken != "" {
			path := filepath.Join(*data, DevTokenFile)
			fmt.Fprintf(stdout, "  Token:  dev admin token (30 days), also in %s:\n          %s\n", path, n.DevToken)
			fmt.Fprintf(stdout, "          more: ordermesh token --data %s --sub CUSTOMER --scopes orders:read,orders:write\n", *data)
			fmt.Fprintf(stdout, "\nTry it:\n  TOKEN=$(cat %s)\n", path)
		} else {
			fmt.Fprintf(stdout, "\nTry it (TOKEN: a JWT your --jwt-key/--jwks-url accepts):\n")
		}
		fmt.Fprintf(stdout, "  curl -s -XPOST %s/api/products %s -H 'Content-Type: application/json' \\\n", n.URL(), auth)
		fmt.Fprintf(stdout, "    -d '{\"sku\":\"MUG\",\"name\":\"Mug\",\"price_cents\":1250,\"currency\":\"EUR\",\"stock\":10}'\n")
		fmt.Fprintf(stdout, "  curl -s -XPOST %s/api/orders %s -H 'Content-Type: application/json' -H 'Idempotency-Key: try-1' \\\n", n.URL(), auth)
		fmt.Fprintf(stdout, "    -d '{\"customer_id\":\"ada\",\"items\":[{\"sku\":\"MUG\",\"quantity\":1}],\"payment_token\":\"tok_ok\",\n")
		fmt.Fprintf(stdout, "         \"shipping_address\":{\"name\":\"Ada\",\"line1\":\"1 Main St\",\"city\":\"Paris\",\"postal_code\":\"75001\",\"country\":\"FR\"}}'\n")
		fmt.Fprintf(stdout, "  curl -s %s/api/orders/ORDER_ID %s\n", n.URL(), auth)
	})
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Usage: ordermesh serve SERVICE --nats URL --db DSN [flags]\n\nRuns one service (orders, inventory, payments, shipping, notifications, psp,\ngateway) as its own process. Any number of instances may run at once.", stderr)
	var c commonFlags
	c.register(":8080", "", fs)
	var g gatewayFlags
	g.register(fs)
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated, e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222 (required)")
	var nf natsFlags
	nf.register(fs)
	db := fs.String("db", "", "the service's database: sqlite:PATH or postgres://USER:PASS@HOST/DB")
	var sf streamFlags
	sf.register(fs)
	partitioned := fs.Bool("partitioned", true, "consume each partition of the events on one instance at a time, so several instances never handle one order's events at once (false: one consumer shared by all instances)")
	pspURL := fs.String("psp-url", "", "payments: base URL of the payment provider (e.g. http://127.0.0.1:9106)")
	pspNotify := fs.String("psp-notify-url", "", "psp: base URL of payments, for async outcomes (e.g. http://127.0.0.1:9103)")
	var upstreams upstreamFlag
	fs.Var(&upstreams, "upstream", "gateway: SERVICE=URL[;w=WEIGHT][,URL…] (repeatable), e.g. orders=http://127.0.0.1:9101,http://127.0.0.1:9102")
	upstreamConfig := fs.String("upstream-config", "", `gateway: JSON file of upstreams, e.g. {"upstreams": {"orders": {"instances": ["http://127.0.0.1:9101;w=2"], "lb": "p2c", "hash_key": "subject"}}}`)
	balance := balanceFlag()
	fs.Var(balance, "lb", "gateway: SERVICE=POLICY (repeatable): round_robin, weighted, least_conn, p2c or hash")
	hashKeys := hashKeyFlag()
	fs.Var(hashKeys, "hash-key", "gateway: SERVICE=subject|ip|header:NAME, what the hash policy keys on (default subject: a caller's streams stick to one instance)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("serve needs exactly one SERVICE (one of %s)", strings.Join(Services, ", "))
	}
	service := pos[0]
	if !slices.Contains(Services, service) {
		return usagef("unknown service %q (one of %s)", service, strings.Join(Services, ", "))
	}
	if *natsURL == "" {
		return usagef("serve needs --nats URL (or $ORDERMESH_NATS), e.g. --nats nats://127.0.0.1:4222")
	}
	if !optionalDB[service] && *db == "" {
		return usagef("service %s needs --db sqlite:PATH or --db postgres://USER:PASS@HOST/DB", service)
	}
	if err := sf.validate(); err != nil {
		return err
	}
	if service == "payments" && *pspURL == "" {
		return usagef("serve payments needs --psp-url, the payment provider's base URL")
	}
	if (service == "psp" || service == "payments") && c.pspAPIKey == "" {
		return usagef("serve %s needs --psp-api-key, the payment provider's API key (the same for serve psp and serve payments)", service)
	}
	if service == "psp" && c.pspAsync && (*pspNotify == "" || c.pspSecret == "") {
		return usagef("serve psp --psp-async needs --psp-notify-url (the payments service's base URL) and --psp-webhook-secret (shared with payments)")
	}
	if *upstreamConfig != "" {
		if service != "gateway" {
			return usagef("--upstream-config is for serve gateway")
		}
		if upstreams, err = loadUpstreamFile(*upstreamConfig, upstreams, balance, hashKeys); err != nil {
			return err
		}
	}
	if service == "gateway" && len(upstreams) == 0 {
		return usagef("serve gateway needs at least one --upstream SERVICE=URL or --upstream-config FILE")
	}
	if err := c.validate(); err != nil {
		return err
	}
	natsOpts, err := nf.options()
	if err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	cfg := Config{
		Services: []string{service}, Addr: c.addr, NATSURL: *natsURL, NATSOptions: natsOpts, DB: *db,
		MaxDeliver: c.maxDeliver, OutboxRetention: c.retention, Logger: log.With("service", service),
		OrderDeadline: c.orderDeadline, PSP: c.psp, PSPURL: *pspURL, Upstreams: upstreams, PprofAddr: c.pprof,
		MetricsAddr: c.metrics, BodyTimeout: c.bodyTimeout,
		Webhooks: c.webhooks, PSPAsync: c.pspAsync, PSPWebhookSecret: c.pspSecret, PSPNotifyURL: *pspNotify, PSPAPIKey: c.pspAPIKey,
		Balance: balance.m, HashKeys: hashKeys.m, CORSOrigins: c.origins(),
	}
	sf.config(&cfg)
	cfg.Partitioned = *partitioned
	if err := g.apply(&cfg); err != nil {
		return err
	}
	return runUntilSignal(ctx, cfg, c.shutdown, func(n *Node) {
		fmt.Fprintf(stdout, "ordermesh %s serving %s on %s (NATS %s)\n", Version, service, n.URL(), redactURL(*natsURL))
	})
}

// redactURL hides the password of a URL with credentials, for printing.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// runUntilSignal starts a node, reports it, waits for ctx (SIGINT/SIGTERM)
// and shuts it down gracefully within timeout.
func runUntilSignal(ctx context.Context, cfg Config, timeout time.Duration, started func(*Node)) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	started(n)
	<-ctx.Done()
	cfg.Logger.Info("shutting down: stopping intake, draining consumers, flushing outboxes")
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	cfg.Logger.Info("stopped cleanly")
	return nil
}

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("setup", "Usage: ordermesh setup --nats URL [--replicas 3] [flags]\n\nCreates or updates the broker's streams (EVENTS, DLQ, REPLAY) and exits: the\nexplicit first step of a deployment. While the cluster cannot place them yet\n(still forming, too few servers) it retries, until --timeout. Replicas are\nnever lowered. Every service also does this at start.", stderr)
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated (required)")
	var nf natsFlags
	nf.register(fs)
	var sf streamFlags
	sf.register(fs)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the cluster to place the streams")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *natsURL == "" {
		return usagef("setup needs --nats URL (or $ORDERMESH_NATS)")
	}
	if err := sf.validate(); err != nil {
		return err
	}
	opts, err := nf.options()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := bus.Dial(ctx, *natsURL, "ordermesh-setup", opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var cfg Config
	sf.config(&cfg)
	b, err := bus.New(nc, bus.Config{Replicas: cfg.Replicas, Placement: cfg.Placement, MaxBytes: cfg.StreamMaxBytes, Logger: log})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := b.EnsureStreams(sctx); err != nil {
		return err
	}
	for _, name := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamReplay} {
		st, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		fmt.Fprintf(stdout, "%s: %d replica(s), %d messages\n", name, info.Config.Replicas, info.State.Msgs)
	}
	return nil
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Usage: ordermesh migrate [--data DIR | --db DSN --service NAME]\n\nApplies pending migrations: every service's SQLite database under --data,\nor the one database given with --db.", stderr)
	data := fs.String("data", "./data", "data directory of `ordermesh run`")
	db := fs.String("db", "", "one service's database: sqlite:PATH or postgres://…")
	service := fs.String("service", "", "the service --db belongs to")
	create := fs.Bool("create", false, "create --data if it does not exist")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	targets := map[string]string{}
	if *db != "" {
		if !slices.Contains(Services, *service) {
			return usagef("--db needs --service NAME (one of %s)", strings.Join(Services, ", "))
		}
		targets[*service] = *db
	} else {
		if err := existingDir(*data, *create); err != nil {
			return err
		}
		release, err := lockDataDir(*data, "migrate")
		if err != nil {
			return err
		}
		defer release()
		cfg := Config{DataDir: *data}
		for _, svc := range Services {
			targets[svc], _ = cfg.DSN(svc)
		}
	}
	for _, svc := range Services {
		dsn, ok := targets[svc]
		if !ok {
			continue
		}
		d, err := sqldb.Open(ctx, dsn)
		if err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		err = d.Migrate(ctx, migrationsOf(svc)...)
		d.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		fmt.Fprintf(stdout, "%s: migrated\n", svc)
	}
	return nil
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = `Usage: ordermesh dlq COMMAND [flags]

Commands:
  list                 every dead letter: id, consumer, type, event id, error
  show ID              one dead letter with its headers and data
  replay ID...         send dead letters back to the consumer named in each
  replay --all         replay every dead letter
  purge --yes          delete every dead letter

Against a running system: --nats URL. ordermesh run --nats-listen 127.0.0.1:4222
exposes the embedded broker to user ordermesh, whose password is in
DATA/nats-password: --nats nats://ordermesh:PASSWORD@127.0.0.1:4222.`
	fs := newFlagSet("dlq", synopsis, stderr)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URL")
	var nf natsFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "replay: every dead letter")
	yes := fs.Bool("yes", false, "purge: really delete every dead letter")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return usagef("dlq needs a command: list, show, replay or purge")
	}
	sub, rest := pos[0], pos[1:]
	ids := make([]uint64, 0, len(rest))
	for _, a := range rest {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return usagef("dead-letter id %q: want a positive number as shown by 'ordermesh dlq list'", a)
		}
		ids = append(ids, id)
	}
	switch {
	case sub == "list" && len(ids) > 0, sub == "purge" && len(ids) > 0:
		return usagef("dlq %s takes no ids", sub)
	case sub == "show" && len(ids) != 1:
		return usagef("dlq show needs exactly one ID")
	case sub == "replay" && (len(ids) == 0) == !*all:
		return usagef("dlq replay needs dead-letter IDs or --all (not both)")
	case sub == "purge" && !*yes:
		return usagef("dlq purge deletes every dead letter; add --yes to confirm")
	case !slices.Contains([]string{"list", "show", "replay", "purge"}, sub):
		return usagef("unknown dlq command %q (list, show, replay, purge)", sub)
	}

	natsOpts, err := nf.options()
	if err != nil {
		return err
	}
	nc, err := bus.Dial(ctx, *natsURL, "ordermesh-dlq", natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		dls, err := b.DeadLetters(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(dls)
		}
		if len(dls) == 0 {
			fmt.Fprintln(stdout, "no dead letters")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCONSUMER\tTYPE\tEVENT\tDELIVERIES\tAT\tERROR")
		for _, d := range dls {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Consumer, d.Type, d.EventID, d.Deliveries,
				d.At.Format(time.RFC3339), truncate(d.Error, 80))
		}
		return tw.Flush()
	case "show":
		d, err := b.DeadLetter(ctx, ids[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(struct {
				bus.DeadLetter
				Data json.RawMessage `json:"data"`
			}{d, validJSONOrString(d.Data)})
		}
		fmt.Fprintf(stdout, "id:          %d\nconsumer:    %s\ntype:        %s\nevent:       %s\nfrom:        %s seq %d (%s)\ndeliveries:  %d\nat:          %s\nerror:       %s\nheaders:\n",
			d.ID, d.Consumer, d.Type, d.EventID, d.Stream, d.StreamSeq, d.Subject, d.Deliveries, d.At.Format(time.RFC3339Nano), d.Error)
		keys := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "  %s: %s\n", k, d.Headers[k])
		}
		fmt.Fprintf(stdout, "data:\n%s\n", d.Data)
		return nil
	case "replay":
		if *all {
			dls, err := b.DeadLetters(ctx)
			if err != nil {
				return err
			}
			for _, d := range dls {
				ids = append(ids, d.ID)
			}
		}
		for _, id := range ids {
			if err := b.Replay(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "replayed %d\n", id)
		}
		fmt.Fprintf(stdout, "%d dead letter(s) replayed\n", len(ids))
		return nil
	default: // purge
		n, err := b.PurgeDeadLetters(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "purged %d dead letter(s)\n", n)
		return nil
	}
}

// scheduleFlag is --webhook-schedule: comma-separated delays.
type scheduleFlag []time.Duration

func (s *scheduleFlag) String() string { return fmt.Sprint([]time.Duration(*s)) }

func (s *scheduleFlag) Set(v string) error {
	var out []time.Duration
	for _, part := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return fmt.Errorf("want comma-separated non-negative durations such as 0s,5s,5m, got %q", part)
		}
		out = append(out, d)
	}
	*s = out
	return nil
}

// serviceFlag collects SERVICE=VALUE pairs (--lb, --hash-key), each
// VALUE checked by check.
type serviceFlag struct {
	m     map[string]string
	want  string // the VALUE's form, for the error
	check func(string) error
}

func (f serviceFlag) String() string { return fmt.Sprint(f.m) }

func (f serviceFlag) Set(v string) error {
	svc, val, ok := strings.Cut(v, "=")
	if !ok || svc == "" {
		return fmt.Errorf("want SERVICE=%s, got %q", f.want, v)
	}
	if err := f.check(val); err != nil {
		return err
	}
	f.m[svc] = val
	return nil
}

// balanceFlag is --lb SERVICE=POLICY.
func balanceFlag() serviceFlag {
	return serviceFlag{m: map[string]string{}, want: "POLICY", check: func(p string) error {
		_, err := gateway.NewBalancer(p, nil)
		return err
	}}
}

// hashKeyFlag is --hash-key SERVICE=subject|ip|header:NAME.
func hashKeyFlag() serviceFlag {
	return serviceFlag{m: map[string]string{}, want: "subject|ip|header:NAME", check: func(k string) error {
		_, err := gateway.HashKey(k)
		return err
	}}
}

// upstreamFlag collects --upstream SERVICE=URL[,URL…].
type upstreamFlag map[string][]string

func (u *upstreamFlag) String() string { return fmt.Sprint(map[string][]string(*u)) }

func (u *upstreamFlag) Set(v string) error {
	svc, urls, ok := strings.Cut(v, "=")
	if !ok || svc == "" || urls == "" {
		return fmt.Errorf("want SERVICE=URL[,URL…], got %q", v)
	}
	if !slices.Contains(Services, svc) || svc == "gateway" {
		return fmt.Errorf("unknown service %q", svc)
	}
	if *u == nil {
		*u = upstreamFlag{}
	}
	(*u)[svc] = append((*u)[svc], strings.Split(urls, ",")...)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func validJSONOrString(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
