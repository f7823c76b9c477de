package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
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

// config checks the common flags and builds the Config that run and serve
// share; each then sets what is its own.
func (c *commonFlags) config(stderr io.Writer) (Config, error) {
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return Config{}, err
	}
	return Config{
		Addr: c.addr, MaxDeliver: c.maxDeliver, OutboxRetention: c.retention, Logger: log,
		OrderDeadline: c.orderDeadline, PSP: c.psp, PprofAddr: c.pprof, MetricsAddr: c.metrics, BodyTimeout: c.bodyTimeout,
		Webhooks: c.webhooks, PSPAsync: c.pspAsync, PSPWebhookSecret: c.pspSecret, PSPAPIKey: c.pspAPIKey, CORSOrigins: c.origins(),
	}, nil
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
