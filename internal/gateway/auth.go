package gateway

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Scopes are the scopes routes require; admin implies the others.
var Scopes = []string{identity.Admin, ScopeOrdersRead, ScopeOrdersWrite}

const (
	ScopeOrdersRead  = identity.OrdersRead
	ScopeOrdersWrite = identity.OrdersWrite
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
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "%s", tokenProblem(err))
	}
	if c.Subject == "" {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "the token has no sub claim: ask its issuer for one that names its subject")
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

// tokenProblem says what the client must fix about a token the parser
// refused, in the client's terms: never the library's own message, which
// speaks of its internals.
func tokenProblem(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is not a JWT (three base64url parts separated by dots) or an om_ API key"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired: get a new one"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet: check its nbf and iat claims and the clocks"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim (exp)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token is not meant for this API (its aud claim)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token was not issued by an issuer this API trusts (its iss claim)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's signature does not verify with this API's keys: it was not issued for this API, or was changed"
	}
	return "the token is not valid for this API"
}
