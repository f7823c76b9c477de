package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/gateway/gatewaytest"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

func bearer(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/api/orders", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func TestJWTAcceptsEachAlgorithm(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{keys.WritePEM(t, t.TempDir())}, HS256Secret: keys.HS})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"EdDSA", "ES256", "RS256", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			id, err := a.Authenticate(bearer(keys.Sign(t, alg, gatewaytest.Claims{Subject: "ada", Scope: "orders:read orders:write"})))
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "ada" || !id.Has("orders:write") || id.Has("admin") || id.Via != "jwt" {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
	t.Run("NumericTimes", func(t *testing.T) { // the raw signer that the string-time rejections use
		now := time.Now()
		tok := keys.SignEdDSAClaims(t, map[string]any{"sub": "ada", "iss": "ordermesh", "aud": "ordermesh", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		if id, err := a.Authenticate(bearer(tok)); err != nil || id.Subject != "ada" {
			t.Fatalf("= %+v, %v", id, err)
		}
	})
	if id, err := a.Authenticate(bearer("")); err != nil || !id.Anonymous() {
		t.Fatalf("no header = %+v, %v; want anonymous", id, err)
	}
}

// TestJWTRejections: every token here must be refused with 401 material
// (apperr.Unauthorized), never accepted and never a 500.
func TestJWTRejections(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	other := gatewaytest.NewKeys(t)
	// No HS256 secret: HS256 is not an allowed algorithm at all.
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{keys.WritePEM(t, t.TempDir())}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ok := gatewaytest.Claims{Subject: "ada", Scope: "admin"}
	with := func(f func(*gatewaytest.Claims)) gatewaytest.Claims { c := ok; f(&c); return c }
	valid := keys.Sign(t, "EdDSA", ok)
	parts := strings.Split(valid, ".")
	for name, tok := range map[string]string{
		"Expired": keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) {
			c.Expires = now.Add(-2 * time.Minute)
			c.IssuedAt = now.Add(-time.Hour)
			c.NotBefore = now.Add(-time.Hour)
		})),
		"NotYetValid":      keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.NotBefore = now.Add(5 * time.Minute) })),
		"IssuedInFuture":   keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.IssuedAt = now.Add(10 * time.Minute) })),
		"WrongIssuer":      keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.Issuer = "evil" })),
		"WrongAudience":    keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.Audience = "billing" })),
		"WrongKeyEdDSA":    other.Sign(t, "EdDSA", ok),
		"WrongKeyES256":    other.Sign(t, "ES256", ok),
		"WrongKeyRS256":    other.Sign(t, "RS256", ok),
		"AlgNone":          keys.Sign(t, "none", ok),
		"HS256NotEnabled":  keys.Sign(t, "HS256", ok),
		"AlgConfusion":     gatewaytest.SignHMACWith(t, keys.RSAPublicPEM(t), ok),
		"NoSubject":        keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.Subject = "" })),
		"Malformed":        "not.a.jwt",
		"Garbage":          "x",
		"TamperedPayload":  parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2],
		"SignatureRemoved": parts[0] + "." + parts[1] + ".",
		"UnknownAPIKey":    "om_doesnotexist",
		"ExpIsAString": keys.SignEdDSAClaims(t, map[string]any{"sub": "ada", "scope": "admin", "iss": "ordermesh", "aud": "ordermesh",
			"iat": now.Unix(), "exp": fmt.Sprint(now.Add(time.Hour).Unix())}),
		"NbfIsAString": keys.SignEdDSAClaims(t, map[string]any{"sub": "ada", "scope": "admin", "iss": "ordermesh", "aud": "ordermesh",
			"iat": now.Unix(), "nbf": fmt.Sprint(now.Unix()), "exp": now.Add(time.Hour).Unix()}),
	} {
		t.Run(name, func(t *testing.T) {
			id, err := a.Authenticate(bearer(tok))
			if err == nil {
				t.Fatalf("accepted as %+v", id)
			}
			if apperr.KindOf(err) != apperr.Unauthorized {
				t.Fatalf("error kind %v (%v); want Unauthorized", apperr.KindOf(err), err)
			}
		})
	}
	t.Run("NotBearer", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Basic YWRhOnB3")
		if _, err := a.Authenticate(r); apperr.KindOf(err) != apperr.Unauthorized {
			t.Fatalf("Basic auth = %v", err)
		}
	})
	t.Run("LeewayAllowsSmallSkew", func(t *testing.T) {
		tok := keys.Sign(t, "EdDSA", with(func(c *gatewaytest.Claims) { c.Expires = now.Add(-5 * time.Second); c.IssuedAt = now.Add(-time.Minute) }))
		if _, err := a.Authenticate(bearer(tok)); err != nil {
			t.Fatalf("expired 5s ago (leeway 30s) = %v", err)
		}
	})
}

// TestJWKSUnknownKidRefreshesOnce: a key rotated in at the identity
// provider is found by one refresh; made-up kids do not hammer the
// provider.
func TestJWKSUnknownKidRefreshesOnce(t *testing.T) {
	first, second := gatewaytest.NewKeys(t), gatewaytest.NewKeys(t)
	var serving atomic.Pointer[[]byte]
	jwks := first.JWKS(t, "k1-")
	serving.Store(&jwks)
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(*serving.Load())
	}))
	defer idp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := NewAuthenticator(ctx, AuthConfig{JWKSURL: idp.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearer(first.Sign(t, "ES256", gatewaytest.Claims{Subject: "a", KeyID: "k1-ec"}))); err != nil {
		t.Fatalf("known kid: %v", err)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches after start = %d, want 1", n)
	}
	// The provider rotates to a new key set.
	jwks2 := second.JWKS(t, "k2-")
	serving.Store(&jwks2)
	if _, err := a.Authenticate(bearer(second.Sign(t, "RS256", gatewaytest.Claims{Subject: "a", KeyID: "k2-rsa"}))); err != nil {
		t.Fatalf("rotated kid: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches after an unknown kid = %d, want 2", n)
	}
	for range 5 {
		if _, err := a.Authenticate(bearer(second.Sign(t, "RS256", gatewaytest.Claims{Subject: "a", KeyID: "made-up"}))); err == nil {
			t.Fatal("a made-up kid verified")
		}
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches after made-up kids = %d; unknown kids within %s must not refetch", n, minRefresh)
	}
}

func TestJWKSFile(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(path, keys.JWKS(t, ""), 0o644)
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearer(keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "a", KeyID: "ed"}))); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(bearer(keys.Sign(t, "ES256", gatewaytest.Claims{Subject: "a"}))); err != nil {
		t.Fatalf("no kid: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{Migrations()}, testAPIKeys)
}

func testAPIKeys(t *testing.T, _ string, db *sqldb.DB) {
	ctx := context.Background()
	key, info, err := CreateAPIKey(ctx, db, "merchant-1", []string{"orders:read"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, APIKeyPrefix) {
		t.Fatalf("key %q lacks the om_ prefix", key)
	}
	var stored int
	db.QueryRow(ctx, "SELECT COUNT(*) FROM api_keys WHERE hash = ? OR hash = ?", key, strings.TrimPrefix(key, APIKeyPrefix)).Scan(&stored)
	if stored != 0 {
		t.Fatal("the key itself is stored")
	}
	a, err := NewAuthenticator(ctx, AuthConfig{APIKeys: NewAPIKeys(db)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Authenticate(bearer(key))
	if err != nil || id.Subject != "merchant-1" || !id.Has("orders:read") || id.Has("orders:write") || id.KeyID != info.ID {
		t.Fatalf("= %+v, %v", id, err)
	}
	if _, _, err := CreateAPIKey(ctx, db, "x", []string{"orders:everything"}); err == nil {
		t.Fatal("an unknown scope was accepted")
	}
	if err := RevokeAPIKey(ctx, db, info.ID); err != nil {
		t.Fatal(err)
	}
	fresh := NewAPIKeys(db) // past the cache
	if _, err := fresh.Lookup(ctx, key); apperr.KindOf(err) != apperr.Unauthorized {
		t.Fatalf("revoked key = %v", err)
	}
}

// TestVerifiedTokenCacheHonoursExpiry: a token remembered as verified is
// still refused once it expires.
func TestVerifiedTokenCacheHonoursExpiry(t *testing.T) {
	keys := gatewaytest.NewKeys(t)
	a, err := NewAuthenticator(context.Background(), AuthConfig{KeyFiles: []string{keys.WritePEM(t, t.TempDir())}, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tok := keys.Sign(t, "EdDSA", gatewaytest.Claims{Subject: "a", Expires: time.Now().Add(1500 * time.Millisecond)})
	if _, err := a.Authenticate(bearer(tok)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := a.Authenticate(bearer(tok)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an expired token is still accepted from the cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
