// Package identity is who is calling: the subject and scopes the gateway
// established at the edge, carried to services in the request context (one
// process) or in a header signed with a secret the gateway and the
// services share (separate processes), so a request that did not pass the
// edge is refused.
package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
)

// Scopes a caller may hold. Admin implies every other.
const (
	Admin       = "admin"
	OrdersRead  = "orders:read"  // a customer's own orders
	OrdersWrite = "orders:write" // placing and cancelling them
)

// Identity is an authenticated caller, or the anonymous one (no subject).
type Identity struct {
	Subject string   `json:"sub,omitempty"`
	Scopes  []string `json:"scopes,omitempty"`
	// Via is how the caller proved it: "jwt", "apikey" or "" (anonymous).
	Via string `json:"via,omitempty"`
	// KeyID names the API key used, if any (rate limits count per key).
	KeyID string `json:"kid,omitempty"`
}

// Anonymous reports whether the caller presented no credentials.
func (id Identity) Anonymous() bool { return id.Subject == "" }

// Has reports whether the caller holds scope (admin holds all).
func (id Identity) Has(scope string) bool {
	return slices.Contains(id.Scopes, scope) || slices.Contains(id.Scopes, Admin)
}

// Owns reports whether the caller may see or act on a resource of
// customer: its own, or any with admin.
func (id Identity) Owns(customer string) bool {
	return id.Has(Admin) || (!id.Anonymous() && id.Subject == customer)
}

type ctxKey struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the identity in ctx; the anonymous one if there is none.
func From(ctx context.Context) Identity {
	id, _ := ctx.Value(ctxKey{}).(Identity)
	return id
}

// Header carries the signed identity from the gateway to a service.
const Header = "Ordermesh-Identity"

// MaxAge bounds how old (or, against clock skew, how far in the future) a
// signed identity may be; the gateway signs a caller's identity afresh
// every ReuseFor.
const MaxAge = 2 * time.Minute

// MinSecret is the shortest shared secret accepted, in bytes.
const MinSecret = 32

// Signer signs and verifies identity headers with a shared secret.
type Signer struct {
	key []byte
	now func() time.Time

	mu     sync.Mutex
	signed map[string]signedHeader // by identity (signedKey)
}

// signedHeader is a header value Sign made, and when.
type signedHeader struct {
	value string
	at    time.Time
}

// ReuseFor is how long Sign hands out one identity's header again instead
// of signing afresh: a quarter of MaxAge, so a reused header still has
// most of its life left when a service checks it.
const ReuseFor = MaxAge / 4

// maxSigned bounds the identities Sign remembers; past it, it forgets all.
const maxSigned = 4096

// NewSigner returns a signer over secret, which must be at least MinSecret
// bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("internal secret is %d bytes; use at least %d random bytes (for example `openssl rand -hex 32`)", len(secret), MinSecret)
	}
	return &Signer{key: secret, now: time.Now}, nil
}

type claims struct {
	Identity
	IssuedAt int64 `json:"iat"`
}

// Sign returns the header value for id: "v1.<payload>.<mac>", base64url.
// The same identity gets the same value for up to ReuseFor: a caller
// sending many requests costs one signature per ReuseFor, not one each.
func (s *Signer) Sign(id Identity) string {
	key := signedKey(id)
	now := s.now()
	s.mu.Lock()
	h, ok := s.signed[key]
	s.mu.Unlock()
	if ok && now.Sub(h.at) < ReuseFor && now.Sub(h.at) >= 0 {
		return h.value
	}
	h = signedHeader{value: s.sign(id, now), at: now}
	s.mu.Lock()
	if s.signed == nil || len(s.signed) >= maxSigned {
		s.signed = map[string]signedHeader{}
	}
	s.signed[key] = h
	s.mu.Unlock()
	return h.value
}

// signedKey names an identity: every field, each length-prefixed, so no
// two identities share a name.
func signedKey(id Identity) string {
	var b strings.Builder
	for _, f := range append([]string{id.Subject, id.Via, id.KeyID}, id.Scopes...) {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
	}
	return b.String()
}

// sign signs id as issued at now.
func (s *Signer) sign(id Identity, now time.Time) string {
	payload, _ := json.Marshal(claims{Identity: id, IssuedAt: now.Unix()})
	p := base64.RawURLEncoding.EncodeToString(payload)
	return "v1." + p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p))
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("v1." + payload))
	return m.Sum(nil)
}

// ErrUnsigned is a request without a valid identity header.
var ErrUnsigned = errors.New("request did not come through the gateway: missing or invalid " + Header)

// Verify checks a header value and returns the identity in it.
func (s *Signer) Verify(v string) (Identity, error) {
	rest, ok := strings.CutPrefix(v, "v1.")
	if !ok {
		return Identity{}, ErrUnsigned
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return Identity{}, ErrUnsigned
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return Identity{}, ErrUnsigned
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Identity{}, ErrUnsigned
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return Identity{}, ErrUnsigned
	}
	if age := s.now().Sub(time.Unix(c.IssuedAt, 0)); age > MaxAge || age < -MaxAge {
		return Identity{}, fmt.Errorf("%w (signed %s ago)", ErrUnsigned, age.Round(time.Second))
	}
	return c.Identity, nil
}

// Require refuses /api/ requests without a valid signed identity (403,
// problem+json) and puts the identity of the others into their context.
// exempt names paths that authenticate themselves (e.g. a provider's
// signed webhooks). Requests outside /api/ (health, metrics) pass.
func Require(s *Signer, exempt func(path string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") || exempt(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		id, err := s.Verify(r.Header.Get(Header))
		if err != nil {
			httpx.Error(w, r, slog.Default(), apperr.New(apperr.Forbidden, "", "%v; call the API through the gateway", err))
			return
		}
		next.ServeHTTP(w, r.WithContext(With(r.Context(), id)))
	})
}
