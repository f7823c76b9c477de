package app

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
)

// gatewayFlags are the edge's own flags (run, serve gateway), declared
// with its component.
type gatewayFlags struct {
	jwtKeys          listFlag
	jwksURL          string
	jwtSecret        string
	issuer, audience string
	redis            string
	onError          string
	limits           classFlag[gateway.Limit]
	concurrency      classFlag[int]
	timeouts         classFlag[time.Duration]
	cacheTTL         time.Duration
}

// Flags declares them on fs.
func (g *gatewayFlags) Flags(fs *flag.FlagSet) {
	g.limits = classFlag[gateway.Limit]{parse: gateway.ParseLimit}
	g.concurrency = classFlag[int]{parse: func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%q: want a number ≥ 1", s)
		}
		return n, nil
	}}
	g.timeouts = classFlag[time.Duration]{parse: func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%q: want a positive duration such as 5s", s)
		}
		return d, nil
	}}
	fs.Var(&g.jwtKeys, "jwt-key", "gateway: file of JWT verification keys, PEM public keys or a JWKS (repeatable)")
	fs.StringVar(&g.jwksURL, "jwks-url", "", "gateway: JWKS URL of the identity provider (cached, refreshed every 5m and on an unknown kid)")
	fs.StringVar(&g.jwtSecret, "jwt-secret", "", "gateway: shared secret enabling HS256 tokens (32+ bytes); HS256 is refused without it")
	fs.StringVar(&g.issuer, "jwt-issuer", gateway.DefaultIssuer, "gateway: required iss claim")
	fs.StringVar(&g.audience, "jwt-audience", gateway.DefaultAudience, "gateway: required aud claim")
	fs.StringVar(&g.redis, "redis", "", "gateway: redis://HOST:PORT/DB shared by all gateway instances for rate limits (default: in-process)")
	fs.StringVar(&g.onError, "rate-limit-on-error", "allow", "gateway: when Redis cannot answer, allow or deny requests")
	fs.Var(&g.limits, "rate-limit", "gateway: CLASS=N/UNIT[,burst=B] per caller (repeatable), e.g. orders:write=100/m,burst=20; classes: "+strings.Join(gateway.Classes, ", "))
	fs.Var(&g.concurrency, "concurrency-limit", "gateway: CLASS=N requests in progress at most (repeatable), e.g. orders:write=256")
	fs.Var(&g.timeouts, "route-timeout", "gateway: CLASS=DURATION (repeatable; default 30s, streams excepted)")
	fs.DurationVar(&g.cacheTTL, "cache-ttl", time.Second, "gateway: micro-cache TTL for catalog reads (0 turns it off)")
}

// Check says what is wrong with them, naming the flag.
func (g *gatewayFlags) Check() error {
	if g.onError != "allow" && g.onError != "deny" {
		return fmt.Errorf("--rate-limit-on-error must be allow or deny, got %q", g.onError)
	}
	if g.cacheTTL < 0 {
		return errors.New("--cache-ttl must not be negative")
	}
	return nil
}

// apply sets cfg's edge settings from the flags.
func (g *gatewayFlags) apply(cfg *Config) {
	cfg.Auth = gateway.AuthConfig{KeyFiles: g.jwtKeys, JWKSURL: g.jwksURL, HS256Secret: []byte(g.jwtSecret), Issuer: g.issuer, Audience: g.audience}
	cfg.RedisURL, cfg.RateLimitOnError = g.redis, g.onError
	cfg.RateLimits, cfg.ConcurrencyLimits, cfg.RouteTimeouts = g.limits.m, g.concurrency.m, g.timeouts.m
	cfg.CacheTTL = g.cacheTTL
	if g.cacheTTL == 0 {
		cfg.CacheTTL = -1
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// classFlag collects CLASS=VALUE per route class.
type classFlag[T any] struct {
	m     map[string]T
	parse func(string) (T, error)
}

func (c *classFlag[T]) String() string {
	if c == nil {
		return ""
	}
	return fmt.Sprint(c.m)
}

func (c *classFlag[T]) Set(v string) error {
	class, val, ok := strings.Cut(v, "=")
	if !ok || !slices.Contains(gateway.Classes, class) {
		return fmt.Errorf("want CLASS=VALUE with CLASS one of %s, got %q", strings.Join(gateway.Classes, ", "), v)
	}
	t, err := c.parse(val)
	if err != nil {
		return err
	}
	if c.m == nil {
		c.m = map[string]T{}
	}
	c.m[class] = t
	return nil
}

func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// upstreamFile is the gateway's upstream configuration file
// (--upstream-config), the file form of --upstream, --lb and --hash-key:
//
//	{"upstreams": {
//	  "orders":    {"instances": ["http://127.0.0.1:9101", "http://127.0.0.1:9102;w=2"], "lb": "p2c"},
//	  "inventory": {"instances": ["http://127.0.0.1:9111"], "lb": "hash", "hash_key": "header:X-Cart"}}}
type upstreamFile struct {
	Upstreams map[string]struct {
		Instances []string `json:"instances"`
		LB        string   `json:"lb"`
		HashKey   string   `json:"hash_key"`
	} `json:"upstreams"`
}
