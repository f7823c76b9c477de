package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/every"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Scopes are the scopes routes require; admin implies the others.
var Scopes = []string{identity.Admin, ScopeOrdersRead, ScopeOrdersWrite}

const (
	ScopeOrdersRead  = "orders:read"
	ScopeOrdersWrite = "orders:write"
)

// CheckScopes reports the first unknown scope in scopes.
func CheckScopes(scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("no scopes given; choose from %s", strings.Join(Scopes, ", "))
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("unknown scope %q; choose from %s", s, strings.Join(Scopes, ", "))
		}
	}
	return nil
}

// AuthConfig says which credentials the gateway accepts.
type AuthConfig struct {
	// KeyFiles hold verification keys: PEM public keys (a private key's
	// public half is used) or a JWKS document.
	KeyFiles []string
	// JWKSURL is fetched at start, every RefreshEvery, and once more when a
	// token names a key id that is not known yet.
	JWKSURL string
	// HS256Secret enables HS256 tokens; without it HS256 is refused.
	HS256Secret []byte
	// Issuer and Audience that tokens must carry (defaults "ordermesh").
	Issuer, Audience string
	// Leeway for exp, nbf and iat (default 30s).
	Leeway time.Duration
	// APIKeys resolves om_… keys; nil refuses them.
	APIKeys *APIKeys
	// RefreshEvery is the JWKS refresh period (default 5 minutes).
	RefreshEvery time.Duration
	Client       *http.Client
	Logger       *slog.Logger
}

// DefaultIssuer and DefaultAudience are what ordermesh's own tokens carry.
const (
	DefaultIssuer   = "ordermesh"
	DefaultAudience = "ordermesh"
)

// Authenticator turns a request's credentials into an identity.
type Authenticator struct {
	cfg    AuthConfig
	parser *jwt.Parser
	keys   *keySet

	// verified remembers tokens whose signature and claims checked out,
	// so a client reusing its token costs a map lookup, not a signature
	// verification (which was a third of the gateway's CPU).
	mu       sync.RWMutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	id identity.Identity
	// until is the earlier of the token's exp (+ leeway) and
	// maxVerifiedAge from verification: a key withdrawn from the JWKS
	// stops working within that time.
	until time.Time
}

const (
	maxVerifiedAge    = 5 * time.Minute
	maxVerifiedTokens = 50000
)

// NewAuthenticator loads the configured keys. A JWKS URL that cannot be
// fetched yet is not fatal: it is retried in the background and on demand.
func NewAuthenticator(ctx context.Context, cfg AuthConfig) (*Authenticator, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = 5 * time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.HS256Secret) > 0 && len(cfg.HS256Secret) < 32 {
		return nil, fmt.Errorf("--jwt-secret is %d bytes; HS256 needs at least 32 random bytes", len(cfg.HS256Secret))
	}
	if len(cfg.KeyFiles) == 0 && cfg.JWKSURL == "" && len(cfg.HS256Secret) == 0 && cfg.APIKeys == nil {
		return nil, errors.New("no credentials can be verified: pass --jwt-key FILE, --jwks-url URL or --jwt-secret, or --db for API keys")
	}
	ks := &keySet{url: cfg.JWKSURL, client: cfg.Client, log: cfg.Logger, byKid: map[string]crypto.PublicKey{}}
	for _, f := range cfg.KeyFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--jwt-key: %w", err)
		}
		if err := ks.addFile(raw); err != nil {
			return nil, fmt.Errorf("--jwt-key %s: %w", f, err)
		}
	}
	if ks.url != "" {
		if err := ks.refresh(ctx); err != nil {
			cfg.Logger.Warn("JWKS not loaded yet; will retry", "url", ks.url, "err", err)
		}
		go ks.refreshEvery(ctx, cfg.RefreshEvery)
	}
	methods := []string{"EdDSA", "ES256", "RS256"}
	if len(cfg.HS256Secret) > 0 {
		methods = append(methods, "HS256")
	}
	return &Authenticator{cfg: cfg, keys: ks, verified: map[string]verifiedToken{}, parser: jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)}, nil
}

// Claims are the claims ordermesh reads from a token: the registered ones
// and the scopes, as an OAuth "scope" string or a "scopes" array.
type Claims struct {
	jwt.RegisteredClaims
	Scope  string   `json:"scope,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// UnmarshalJSON reads the claims, refusing times that are not JSON
// numbers: RFC 7519 makes exp, nbf and iat NumericDates, and golang-jwt
// would otherwise accept "exp": "9999999999" as a string.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		if v, ok := raw[name]; ok && (len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9'))) {
			return fmt.Errorf("claim %s must be a number of seconds, got %s", name, v)
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Authenticate returns the caller's identity: anonymous without an
// Authorization header, an apperr Unauthorized for bad credentials.
func (a *Authenticator) Authenticate(r *http.Request) (identity.Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return identity.Identity{}, nil
	}
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "want `Bearer TOKEN` (a JWT or an om_… API key)")
	}
	if strings.HasPrefix(cred, APIKeyPrefix) {
		if a.cfg.APIKeys == nil {
			return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "API keys are not enabled on this gateway")
		}
		return a.cfg.APIKeys.Lookup(r.Context(), cred)
	}
	now := time.Now()
	a.mu.RLock()
	v, ok := a.verified[cred]
	a.mu.RUnlock()
	if ok && now.Before(v.until) {
		return v.id, nil
	}
	var c Claims
	if _, err := a.parser.ParseWithClaims(cred, &c, a.keyFor(r.Context())); err != nil {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "invalid token: %v", err)
	}
	if c.Subject == "" {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "invalid token: no sub claim")
	}
	scopes := c.Scopes
	if c.Scope != "" {
		scopes = append(scopes, strings.Fields(c.Scope)...)
	}
	id := identity.Identity{Subject: c.Subject, Scopes: scopes, Via: "jwt"}
	until := now.Add(maxVerifiedAge)
	if exp := c.ExpiresAt.Add(a.cfg.Leeway); exp.Before(until) {
		until = exp
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerifiedTokens {
		clear(a.verified)
	}
	a.verified[cred] = verifiedToken{id: id, until: until}
	a.mu.Unlock()
	return id, nil
}

// keyFor returns the key function for one token: the shared secret for
// HS256; otherwise the key named by kid (refreshing the JWKS once for an
// unknown kid), or every key of the algorithm's type when there is no kid.
// A key is only ever used with the algorithm of its own type, so a token
// cannot make an RSA public key serve as an HMAC secret.
func (a *Authenticator) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == "HS256" {
			return a.cfg.HS256Secret, nil
		}
		kid, _ := t.Header["kid"].(string)
		keys, known := a.keys.lookup(kid)
		if !known && a.keys.url != "" {
			a.keys.refreshUnknown(ctx)
			keys, _ = a.keys.lookup(kid)
		}
		var fit []jwt.VerificationKey
		for _, k := range keys {
			if keyFits(alg, k) {
				fit = append(fit, k)
			}
		}
		switch len(fit) {
		case 0:
			return nil, fmt.Errorf("no %s key for kid %q", alg, kid)
		case 1:
			return fit[0], nil
		}
		return jwt.VerificationKeySet{Keys: fit}, nil
	}
}

func keyFits(alg string, k crypto.PublicKey) bool {
	switch k := k.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return alg == "RS256"
	}
	return false
}

// keySet holds verification keys: those from files (with or without a kid)
// and those from a JWKS URL.
type keySet struct {
	url    string
	client *http.Client
	log    *slog.Logger

	mu         sync.RWMutex
	byKid      map[string]crypto.PublicKey // from files and the JWKS
	noKid      []crypto.PublicKey          // PEM keys: match any kid
	fromURL    map[string]crypto.PublicKey
	lastForced time.Time // the last refresh an unknown kid caused
	refreshing sync.Mutex
}

// lookup returns the key named kid (known), or with no kid or an unknown
// one the keys that carry no kid of their own (PEM files) and, without a
// kid, every key.
func (s *keySet) lookup(kid string) (keys []crypto.PublicKey, known bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if kid != "" {
		if k, ok := s.fromURL[kid]; ok {
			return []crypto.PublicKey{k}, true
		}
		if k, ok := s.byKid[kid]; ok {
			return []crypto.PublicKey{k}, true
		}
		return s.noKid, false
	}
	all := slices.Clone(s.noKid)
	for _, k := range s.byKid {
		all = append(all, k)
	}
	for _, k := range s.fromURL {
		all = append(all, k)
	}
	return all, true
}

func (s *keySet) addFile(raw []byte) error {
	if trimmed := strings.TrimSpace(string(raw)); strings.HasPrefix(trimmed, "{") {
		keys, err := parseJWKS(raw)
		if err != nil {
			return err
		}
		for kid, k := range keys {
			if kid == "" {
				s.noKid = append(s.noKid, k)
			} else {
				s.byKid[kid] = k
			}
		}
		return nil
	}
	n := 0
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		k, err := parsePEM(b)
		if err != nil {
			return err
		}
		s.noKid = append(s.noKid, k)
		n++
	}
	if n == 0 {
		return errors.New("no PEM key or JWKS in the file")
	}
	return nil
}

func parsePEM(b *pem.Block) (crypto.PublicKey, error) {
	switch b.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		if s, ok := k.(crypto.Signer); ok {
			return s.Public(), nil
		}
	}
	return nil, fmt.Errorf("PEM block %q is not a public key (want PUBLIC KEY)", b.Type)
}

// minRefresh spaces refreshes forced by unknown key ids, so tokens with
// made-up kids cannot turn the gateway against the identity provider.
const minRefresh = 10 * time.Second

func (s *keySet) refreshUnknown(ctx context.Context) {
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	if time.Since(s.lastForced) < minRefresh {
		return
	}
	s.lastForced = time.Now()
	if err := s.fetch(ctx); err != nil {
		s.log.Warn("JWKS refresh for an unknown kid failed", "url", s.url, "err", err)
	}
}

func (s *keySet) refresh(ctx context.Context) error {
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	return s.fetch(ctx)
}

func (s *keySet) refreshEvery(ctx context.Context, interval time.Duration) {
	every.After(ctx, interval, func(ctx context.Context) {
		if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("JWKS refresh failed; keeping the keys we have", "url", s.url, "err", err)
		}
	})
}

// fetch loads the JWKS; callers hold s.refreshing.
func (s *keySet) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	keys, err := parseJWKS(raw)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.fromURL = keys
	s.mu.Unlock()
	return nil
}

// jwk is the subset of RFC 7517/8037 fields of signature keys.
type jwk struct {
	Kty, Crv, Kid, Use, Alg string
	X, Y, N, E              string
}

// parseJWKS reads a JWK Set (or a single JWK) into keys by kid. Keys for
// encryption, of unsupported types or malformed, are skipped; a set with
// no usable key is an error.
func parseJWKS(raw []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	if set.Keys == nil {
		var one jwk
		if err := json.Unmarshal(raw, &one); err == nil && one.Kty != "" {
			set.Keys = []jwk{one}
		}
	}
	keys := map[string]crypto.PublicKey{}
	var errs []error
	for _, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		pk, err := k.public()
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", k.Kid, err))
			continue
		}
		keys[k.Kid] = pk
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS has no usable signature key %v", errors.Join(errs...))
	}
	return keys, nil
}

func (k jwk) public() (crypto.PublicKey, error) {
	b := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519":
		x, err := b(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	case k.Kty == "EC" && k.Crv == "P-256":
		x, err1 := b(k.X)
		y, err2 := b(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 coordinates")
		}
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, err
		}
		return pk, nil
	case k.Kty == "RSA":
		n, err1 := b(k.N)
		e, err2 := b(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits; want 2048 or more", pk.N.BitLen())
		}
		return pk, nil
	}
	return nil, fmt.Errorf("unsupported key type %s/%s", k.Kty, k.Crv)
}
