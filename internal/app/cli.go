package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
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
                                     mint a JWT with the dev key of 'run' (or --key FILE,
                                     or --jwt-secret-file FILE for HS256)
  ordermesh apikey create|list|revoke
                                     API keys (om_…), stored as SHA-256 hashes
  ordermesh healthcheck [--url URL]  exit 0 if a process is ready (for container healthchecks)
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
	case "healthcheck":
		return cmdHealthcheck(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "ordermesh", fullVersion())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	default:
		return usagef("unknown command %q (commands: run, serve, setup, migrate, dlq, load, token, apikey, healthcheck, version)", cmd)
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
	internalSecret            string
	broker                    string
	// cfg holds the components' own settings, which their flags set.
	cfg Config
}

// register adds the shared flags; run listens on loopback by default (a
// development default), serve on every interface (it runs behind a
// gateway or in a container).
func (c *commonFlags) register(defaultAddr, defaultMetrics string, fs *flag.FlagSet) {
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
	fs.StringVar(&c.broker, "broker", "", "a RabbitMQ broker to run on instead of NATS JetStream, amqp://USER:PASS@HOST:5672/VHOST (run then embeds no NATS; serve needs no --nats)")
	fs.StringVar(&c.internalSecret, "internal-secret", "", "secret (32+ bytes) the gateway signs callers' identities with; services behind a separate gateway require it")
	for _, comp := range c.cfg.components(nil) {
		if comp.Settings != nil {
			comp.Settings.Flags(fs)
		}
	}
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
	if c.broker != "" && !strings.HasPrefix(c.broker, "amqp://") && !strings.HasPrefix(c.broker, "amqps://") {
		return usagef("--broker takes a RabbitMQ URL, amqp://USER:PASS@HOST:5672/VHOST (NATS is the default: run embeds it, serve takes --nats)")
	}
	if c.internalSecret != "" && len(c.internalSecret) < identity.MinSecret {
		return usagef("--internal-secret is %d bytes; use at least %d random bytes (for example `openssl rand -hex 32`)", len(c.internalSecret), identity.MinSecret)
	}
	for _, comp := range c.cfg.components(nil) {
		if comp.Settings == nil {
			continue
		}
		if err := comp.Settings.Check(); err != nil {
			return usagef("%v", err)
		}
	}
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
	cfg := c.cfg
	cfg.Addr, cfg.MaxDeliver, cfg.OutboxRetention, cfg.Logger = c.addr, c.maxDeliver, c.retention, log
	cfg.PprofAddr, cfg.MetricsAddr, cfg.BodyTimeout, cfg.CORSOrigins = c.pprof, c.metrics, c.bodyTimeout, c.origins()
	cfg.InternalSecret, cfg.BrokerURL = c.internalSecret, c.broker
	cfg.Gateway.apply(&cfg)
	return cfg, nil
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
	if !slices.Contains(upstreamServices(), svc) {
		return fmt.Errorf("unknown service %q", svc)
	}
	if *u == nil {
		*u = upstreamFlag{}
	}
	(*u)[svc] = append((*u)[svc], strings.Split(urls, ",")...)
	return nil
}

// fullVersion is Version, or for a build without one, the module version
// and the VCS revision the Go toolchain embedded (go build in a checkout,
// go install module@version).
func fullVersion() string {
	info, ok := debug.ReadBuildInfo()
	if Version != "dev" || !ok {
		return Version
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = Version
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (revision %.12s%s)", rev, modified)
	}
	return v + " " + info.GoVersion
}
