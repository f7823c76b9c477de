package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "Usage: ordermesh run [flags]\n\nRuns every ordermesh service in one process on embedded NATS JetStream\n(file store under DATA/nats), or on the RabbitMQ of --broker, and one\nSQLite database per service (DATA/<service>.db).\n\n"+tracingHelp, stderr)
	var c commonFlags
	c.register("127.0.0.1:8080", "127.0.0.1:9090", fs)
	data := fs.String("data", "./data", "data directory (NATS store, SQLite files)")
	natsListen := fs.String("nats-listen", "", "also expose the embedded NATS on this TCP address, e.g. 127.0.0.1:4222 (for ordermesh dlq)")
	pspListen := fs.String("psp-listen", "127.0.0.1:0", "address of the payment-provider simulator's own API (never the API port; port 0: any free one)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	cfg.Services, cfg.DataDir, cfg.NATSListen, cfg.PSPListen = Services, *data, *natsListen, *pspListen
	if err := checkPorts(map[string]string{"addr": cfg.Addr, "metrics-addr": cfg.MetricsAddr, "nats-listen": cfg.NATSListen, "psp-listen": cfg.PSPListen, "pprof": cfg.PprofAddr}); err != nil {
		return usagef("%v", err)
	}
	return runUntilSignal(ctx, cfg, c.shutdown, func(n *Node) {
		fmt.Fprintf(stdout, "ordermesh %s running\n", Version)
		fmt.Fprintf(stdout, "  HTTP:   %s   (health: %s/livez, %s/readyz)\n", n.URL(), n.URL(), n.URL())
		fmt.Fprintf(stdout, "  Console: %s/console/   (sign in with the token below)\n", n.URL())
		if u := n.MetricsURL(); u != "" {
			fmt.Fprintf(stdout, "  Metrics: %s\n", u)
		}
		if n.rabbit != nil {
			fmt.Fprintf(stdout, "  Broker: RabbitMQ at %s\n", rabbitmq.Redact(cfg.BrokerURL))
		} else if u := n.embedded.ClientURL(); u != "" {
			fmt.Fprintf(stdout, "  NATS:   %s   (user %s, password in %s)\n", u, NATSUser, filepath.Join(*data, NATSPasswordFile))
			fmt.Fprintf(stdout, "          try: ordermesh dlq list --nats nats://%s:$(cat %s)@%s\n", NATSUser, filepath.Join(*data, NATSPasswordFile), strings.TrimPrefix(u, "nats://"))
		} else {
			fmt.Fprintf(stdout, "  NATS:   embedded, in-process only (add --nats-listen 127.0.0.1:4222 to expose it)\n")
		}
		if u := n.PSPURL(); u != "" {
			fmt.Fprintf(stdout, "  PSP:    %s   (the payment-provider simulator's API; --psp-listen)\n", u)
		}
		fmt.Fprintf(stdout, "  Traces: %s\n", tracingLine())
		fmt.Fprintf(stdout, "  Data:   %s   (each service's broker password in nats-SERVICE.password, the payment-token key in %s)\n", *data, PaymentTokenKeyFile)
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

const serveSynopsis = "Usage: ordermesh serve SERVICE --nats URL --db DSN [flags]\n\nRuns one service (orders, inventory, payments, shipping, notifications, psp,\ngateway) as its own process. Any number of instances may run at once.\n\n" + tracingHelp

// tracingHelp says how tracing is turned on, for run's and serve's help.
const tracingHelp = `Tracing (OpenTelemetry, off unless set): OTEL_EXPORTER_OTLP_ENDPOINT (e.g.
http://127.0.0.1:4318, or 127.0.0.1:4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc),
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and the other
standard OTEL_* variables.`

// tracingLine says where traces go, for the start banners.
func tracingLine() string {
	if d := telemetry.Describe(); d != "" {
		return d
	}
	return "off (set OTEL_EXPORTER_OTLP_ENDPOINT to export them)"
}

// checkServeNeeds says what `serve service` is missing.
func checkServeNeeds(service, natsURL, db, secret string, c *commonFlags) error {
	var dsnErr error
	if db != "" {
		dsnErr = sqldb.CheckDSN(db)
	}
	switch {
	case natsURL != "" && c.broker != "":
		return usagef("serve takes --nats or --broker, not both: one broker carries the events")
	case natsURL == "" && c.broker == "" && !isEdge(service):
		return usagef("serve needs --nats URL (or $ORDERMESH_NATS), e.g. --nats nats://127.0.0.1:4222, or --broker amqp://USER:PASS@HOST:5672/VHOST for RabbitMQ")
	case !optionalDB(service) && db == "":
		return usagef("service %s needs --db sqlite:PATH or --db postgres://USER:PASS@HOST/DB", service)
	case dsnErr != nil:
		return usagef("--db: %v", dsnErr)
	case !isEdge(service) && secret == "":
		return usagef("serve %s needs --internal-secret (the gateway's, 32+ bytes), so it can refuse requests that bypass the gateway", service)
	}
	for _, comp := range c.cfg.components(nil) {
		if comp.Name == service && comp.ServeNeeds != nil {
			if err := comp.ServeNeeds(); err != nil {
				return usagef("%v", err)
			}
		}
	}
	return nil
}

// upstreamFlags are the gateway's upstreams: where each service's
// instances are and how requests are spread over them.
type upstreamFlags struct {
	upstreams        upstreamFlag
	file             *string
	balance, hashKey serviceFlag
}

// upstreamFlagNames are the flags register declares.
var upstreamFlagNames = func() []string {
	fs := flag.NewFlagSet("upstreams", flag.ContinueOnError)
	new(upstreamFlags).register(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}()

func (u *upstreamFlags) register(fs *flag.FlagSet) {
	fs.Var(&u.upstreams, "upstream", "gateway: SERVICE=URL[;w=WEIGHT][,URL…] (repeatable), e.g. orders=http://127.0.0.1:9101,http://127.0.0.1:9102")
	u.file = fs.String("upstream-config", "", `gateway: JSON file of upstreams, e.g. {"upstreams": {"orders": {"instances": ["http://127.0.0.1:9101;w=2"], "lb": "p2c", "hash_key": "subject"}}}`)
	u.balance, u.hashKey = balanceFlag(), hashKeyFlag()
	fs.Var(u.balance, "lb", "gateway: SERVICE=POLICY (repeatable): round_robin, weighted, least_conn, p2c or hash")
	fs.Var(u.hashKey, "hash-key", "gateway: SERVICE=subject|ip|header:NAME, what the hash policy keys on (default subject: a caller's streams stick to one instance)")
}

// config reads --upstream-config, if given, and sets cfg's upstreams; a
// gateway needs at least one.
func (u *upstreamFlags) config(service string, cfg *Config) error {
	if *u.file != "" {
		var err error
		if u.upstreams, err = loadUpstreamFile(*u.file, u.upstreams, u.balance, u.hashKey); err != nil {
			return err
		}
	}
	if isEdge(service) && len(u.upstreams) == 0 {
		return usagef("serve gateway needs at least one --upstream SERVICE=URL or --upstream-config FILE")
	}
	cfg.Upstreams, cfg.Balance, cfg.HashKeys = u.upstreams, u.balance.m, u.hashKey.m
	return nil
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", serveSynopsis, stderr)
	var c commonFlags
	c.register(":8080", "", fs)
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated, e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222 (required, except by a gateway of static --upstream: without it, the console's broker views answer 503)")
	var nf natsFlags
	nf.register(fs)
	db := fs.String("db", "", "the service's database: sqlite:PATH or postgres://USER:PASS@HOST/DB")
	var sf streamFlags
	sf.register(fs)
	partitioned := fs.Bool("partitioned", true, "consume each partition of the events on one instance at a time, so several instances never handle one order's events at once (false: one consumer shared by all instances)")
	consumerState := fs.String("consumer-state", "file", "where the brokers keep the consumers' state: file, or memory (less broker CPU; lost, and the stream re-read, only if every broker stops at once); every instance must agree")
	consumerReplicas := fs.Int("consumer-replicas", 0, "brokers that keep each consumer's state on the event stream: 0 as many as the stream (a broker may die), or 1 (about 30% less broker CPU; a consumer stops while its broker is down); every instance must agree")
	var uf upstreamFlags
	uf.register(fs)
	serviceHelp(fs, args, stderr)
	pos, given, err := parseFlagsGiven(fs, args)
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
	if err := checkFlagsOf(service, given); err != nil {
		return err
	}
	if err := checkServeNeeds(service, *natsURL, *db, c.internalSecret, &c); err != nil {
		return err
	}
	if err := sf.validate(); err != nil {
		return err
	}
	if *consumerState != "file" && *consumerState != "memory" {
		return usagef("--consumer-state must be file or memory, got %q", *consumerState)
	}
	if *consumerReplicas < 0 || *consumerReplicas > 5 {
		return usagef("--consumer-replicas must be 0 (as the stream) to 5, got %d", *consumerReplicas)
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	if cfg.NATSOptions, err = nf.options(); err != nil {
		return err
	}
	cfg.Services, cfg.Logger, cfg.NATSURL, cfg.DB = []string{service}, cfg.Logger.With("service", service), *natsURL, *db
	if err := uf.config(service, &cfg); err != nil {
		return err
	}
	sf.config(&cfg)
	cfg.Partitioned, cfg.ConsumerMemory, cfg.ConsumerReplicas = *partitioned, *consumerState == "memory", *consumerReplicas
	return runUntilSignal(ctx, cfg, c.shutdown, func(n *Node) {
		fmt.Fprintf(stdout, "ordermesh %s serving %s on %s (%s; traces: %s)\n", Version, service, n.URL(), brokerLine(*natsURL, c.broker), tracingLine())
	})
}

// redactURL hides the password of a URL with credentials, for printing.

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

// serviceHelp makes `serve SERVICE --help` list SERVICE's flags only.
func serviceHelp(fs *flag.FlagSet, args []string, stderr io.Writer) {
	service := helpFor(args)
	if service == "" {
		return
	}
	fs.Usage = func() {
		synopsis := fmt.Sprintf("Usage: ordermesh serve %s --nats URL [flags]\n\nThe flags of serve %s (every service's: ordermesh serve --help).", service, service)
		printUsage(stderr, synopsis, fs, flagsOfService(service))
	}
}

// helpFor is the service `serve SERVICE --help` asks about ("" when args
// ask for no help or name no service).
func helpFor(args []string) string {
	service, help := "", false
	for _, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			help = true
		case slices.Contains(Services, a):
			service = a
		}
	}
	if !help {
		return ""
	}
	return service
}

// brokerLine names the broker a served service runs on, for its banner.
func brokerLine(natsURL, brokerURL string) string {
	switch {
	case brokerURL != "":
		return "RabbitMQ " + rabbitmq.Redact(brokerURL)
	case natsURL != "":
		return "NATS " + bus.RedactURLs(natsURL)
	}
	return "no broker"
}
