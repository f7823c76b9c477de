package app

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// gatewayFlags configure the edge (run, serve gateway) and, for the
// internal secret, every served service.
type gatewayFlags struct {
	jwtKeys          listFlag
	jwksURL          string
	jwtSecret        string
	issuer, audience string
	internalSecret   string
	redis            string
	onError          string
	limits           classFlag[gateway.Limit]
	concurrency      classFlag[int]
	timeouts         classFlag[time.Duration]
	cacheTTL         time.Duration
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
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
	fs.StringVar(&g.internalSecret, "internal-secret", "", "secret (32+ bytes) the gateway signs callers' identities with; services behind a separate gateway require it")
	fs.StringVar(&g.redis, "redis", "", "gateway: redis://HOST:PORT/DB shared by all gateway instances for rate limits (default: in-process)")
	fs.StringVar(&g.onError, "rate-limit-on-error", "allow", "gateway: when Redis cannot answer, allow or deny requests")
	fs.Var(&g.limits, "rate-limit", "gateway: CLASS=N/UNIT[,burst=B] per caller (repeatable), e.g. orders:write=100/m,burst=20; classes: "+strings.Join(gateway.Classes, ", "))
	fs.Var(&g.concurrency, "concurrency-limit", "gateway: CLASS=N requests in progress at most (repeatable), e.g. orders:write=256")
	fs.Var(&g.timeouts, "route-timeout", "gateway: CLASS=DURATION (repeatable; default 30s, streams excepted)")
	fs.DurationVar(&g.cacheTTL, "cache-ttl", time.Second, "gateway: micro-cache TTL for catalog reads (0 turns it off)")
}

func (g *gatewayFlags) apply(cfg *Config) error {
	if g.onError != "allow" && g.onError != "deny" {
		return usagef("--rate-limit-on-error must be allow or deny, got %q", g.onError)
	}
	if g.cacheTTL < 0 {
		return usagef("--cache-ttl must not be negative")
	}
	cfg.Auth = gateway.AuthConfig{KeyFiles: g.jwtKeys, JWKSURL: g.jwksURL, HS256Secret: []byte(g.jwtSecret), Issuer: g.issuer, Audience: g.audience}
	cfg.InternalSecret, cfg.RedisURL, cfg.RateLimitOnError = g.internalSecret, g.redis, g.onError
	cfg.RateLimits, cfg.ConcurrencyLimits, cfg.RouteTimeouts = g.limits.m, g.concurrency.m, g.timeouts.m
	cfg.CacheTTL = g.cacheTTL
	if g.cacheTTL == 0 {
		cfg.CacheTTL = -1
	}
	return nil
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

func cmdToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "Usage: ordermesh token --sub ID --scopes SCOPE[,SCOPE…] [flags]\n\nMints a JWT signed with the development key of `ordermesh run` (DATA/"+gateway.DevKeyFile+")\nor with --key FILE (PKCS#8 PEM: Ed25519 → EdDSA, P-256 → ES256, RSA → RS256).\nScopes: "+strings.Join(gateway.Scopes, ", ")+".", stderr)
	sub := fs.String("sub", "", "subject: the customer id the token acts as (orders:read sees only its orders)")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	data := fs.String("data", "./data", "data directory of `ordermesh run` (holds the dev key)")
	keyFile := fs.String("key", "", "private key file (default DATA/"+gateway.DevKeyFile+")")
	issuer := fs.String("jwt-issuer", gateway.DefaultIssuer, "iss claim")
	audience := fs.String("jwt-audience", gateway.DefaultAudience, "aud claim")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *sub == "" {
		return usagef("token needs --sub ID")
	}
	if err := gateway.CheckScopes(splitScopes(*scopes)); err != nil {
		return usagef("--scopes: %v", err)
	}
	if *keyFile == "" {
		*keyFile = filepath.Join(*data, gateway.DevKeyFile)
	}
	key, err := gateway.LoadSigningKey(*keyFile)
	if err != nil {
		return fmt.Errorf("signing key: %w (run `ordermesh run --data DIR` once to make a dev key, or pass --key FILE)", err)
	}
	tok, err := gateway.Mint(key, gateway.TokenRequest{Subject: *sub, Scopes: splitScopes(*scopes), TTL: *ttl, Issuer: *issuer, Audience: *audience})
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func cmdAPIKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = `Usage: ordermesh apikey COMMAND [flags]

Commands:
  create --sub ID --scopes SCOPE[,SCOPE…]   make a key; it is printed once and stored only as a SHA-256 hash
  list                                      every key: id, subject, scopes, created, revoked
  revoke ID                                 stop accepting a key (gateways notice within 10s)

The keys live in the gateway's database: DATA/gateway.db of ` + "`ordermesh run`" + `, or --db.
Use a key as Authorization: Bearer om_…`
	fs := newFlagSet("apikey", synopsis, stderr)
	sub := fs.String("sub", "", "create: the subject the key acts as")
	scopes := fs.String("scopes", "", "create: comma-separated scopes ("+strings.Join(gateway.Scopes, ", ")+")")
	data := fs.String("data", "./data", "data directory of `ordermesh run`")
	dsn := fs.String("db", "", "the gateway's database instead: sqlite:PATH or postgres://…")
	asJSON := fs.Bool("json", false, "list: print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return usagef("apikey needs a command: create, list or revoke")
	}
	switch {
	case pos[0] == "create" && len(pos) == 1:
		if *sub == "" {
			return usagef("apikey create needs --sub ID")
		}
		if err := gateway.CheckScopes(splitScopes(*scopes)); err != nil {
			return usagef("--scopes: %v", err)
		}
	case pos[0] == "list" && len(pos) == 1:
	case pos[0] == "revoke" && len(pos) == 2:
	default:
		return usagef("want apikey create --sub ID --scopes …, apikey list, or apikey revoke ID")
	}
	if *dsn == "" {
		*dsn, _ = Config{DataDir: *data}.DSN("gateway")
	}
	db, err := sqldb.Open(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("gateway database: %w", err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, migrationsOf("gateway")...); err != nil {
		return fmt.Errorf("gateway database: %w", err)
	}
	switch pos[0] {
	case "create":
		key, info, err := gateway.CreateAPIKey(ctx, db, *sub, splitScopes(*scopes))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "API key %s for %s (%s); it is shown only now:\n", info.ID, info.Subject, strings.Join(info.Scopes, " "))
		fmt.Fprintln(stdout, key)
	case "list":
		keys, err := gateway.ListAPIKeys(ctx, db)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(keys)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSUBJECT\tSCOPES\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Subject, strings.Join(k.Scopes, " "), k.CreatedAt.Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if err := gateway.RevokeAPIKey(ctx, db, pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", pos[1])
	}
	return nil
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

// loadUpstreamFile adds the services of an upstream configuration file to
// what the flags gave. A service named both in the file and by --upstream
// is an error: which one wins would be a guess. --lb and --hash-key win
// over the file's lb and hash_key.
func loadUpstreamFile(path string, upstreams upstreamFlag, balance, hashKeys serviceFlag) (upstreamFlag, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--upstream-config: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f upstreamFile
	if err := dec.Decode(&f); err != nil {
		return nil, usagef("--upstream-config %s: %v", path, err)
	}
	if len(f.Upstreams) == 0 {
		return nil, usagef(`--upstream-config %s: no services under "upstreams"`, path)
	}
	if upstreams == nil {
		upstreams = upstreamFlag{}
	}
	for _, svc := range slices.Sorted(maps.Keys(f.Upstreams)) {
		u := f.Upstreams[svc]
		where := fmt.Sprintf("--upstream-config %s: upstreams.%s", path, svc)
		if !slices.Contains(Services, svc) || svc == "gateway" {
			return nil, usagef("%s: unknown service (one of %s)", where, strings.Join(slices.DeleteFunc(slices.Clone(Services), func(s string) bool { return s == "gateway" }), ", "))
		}
		if _, dup := upstreams[svc]; dup {
			return nil, usagef("%s: also given by --upstream; name each service in one place", where)
		}
		if len(u.Instances) == 0 {
			return nil, usagef("%s.instances: list at least one http://HOST:PORT", where)
		}
		for _, in := range u.Instances {
			if _, err := gateway.NewInstance(in); err != nil {
				return nil, usagef("%s.instances: %v", where, err)
			}
		}
		if _, byFlag := balance.m[svc]; u.LB != "" && !byFlag {
			if err := balance.Set(svc + "=" + u.LB); err != nil {
				return nil, usagef("%s.lb: %v", where, err)
			}
		}
		if _, byFlag := hashKeys.m[svc]; u.HashKey != "" && !byFlag {
			if err := hashKeys.Set(svc + "=" + u.HashKey); err != nil {
				return nil, usagef("%s.hash_key: %v", where, err)
			}
		}
		upstreams[svc] = u.Instances
	}
	return upstreams, nil
}
