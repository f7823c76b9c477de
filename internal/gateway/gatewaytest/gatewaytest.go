// Package gatewaytest mints tokens for tests with an independent JOSE
// library (lestrrat-go/jwx), so the gateway's verification is never tested
// against its own signing code.
package gatewaytest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Keys are one signing key of each supported type, plus an HS256 secret.
type Keys struct {
	Ed  ed25519.PrivateKey
	EC  *ecdsa.PrivateKey
	RSA *rsa.PrivateKey
	HS  []byte
}

// NewKeys makes fresh keys.
func NewKeys(tb testing.TB) *Keys {
	tb.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	hs := make([]byte, 32)
	rand.Read(hs)
	return &Keys{Ed: ed, EC: ec, RSA: rk, HS: hs}
}

// PublicPEM is the three public keys as PEM "PUBLIC KEY" blocks.
func (k *Keys) PublicPEM(tb testing.TB) []byte {
	tb.Helper()
	var out []byte
	for _, pub := range []any{k.Ed.Public(), k.EC.Public(), k.RSA.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

// RSAPublicPEM is the RSA public key alone, as PEM: what an attacker uses
// as an HMAC secret in an algorithm-confusion attack.
func (k *Keys) RSAPublicPEM(tb testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.RSA.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePEM writes PublicPEM to dir and returns the path.
func (k *Keys) WritePEM(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "jwt-keys.pem")
	if err := os.WriteFile(path, k.PublicPEM(tb), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// JWKS is the public keys as a JWK Set, with kids prefix+"ed", "ec", "rsa".
func (k *Keys) JWKS(tb testing.TB, prefix string) []byte {
	tb.Helper()
	set := jwk.NewSet()
	for kid, pub := range map[string]any{"ed": k.Ed.Public(), "ec": k.EC.Public(), "rsa": k.RSA.Public()} {
		key, err := jwk.Import(pub)
		if err != nil {
			tb.Fatal(err)
		}
		key.Set(jwk.KeyIDKey, prefix+kid)
		set.AddKey(key)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// Claims of a test token; zero times mean "now" (iat, nbf) and "in an
// hour" (exp); Issuer and Audience default to "ordermesh".
type Claims struct {
	Subject, Issuer, Audience, Scope string
	IssuedAt, NotBefore, Expires     time.Time
	KeyID                            string
}

func (c Claims) build(tb testing.TB) jwt.Token {
	now := time.Now()
	if c.Issuer == "" {
		c.Issuer = "ordermesh"
	}
	if c.Audience == "" {
		c.Audience = "ordermesh"
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = now
	}
	if c.Expires.IsZero() {
		c.Expires = now.Add(time.Hour)
	}
	b := jwt.NewBuilder().Subject(c.Subject).Issuer(c.Issuer).Audience([]string{c.Audience}).
		IssuedAt(c.IssuedAt).NotBefore(c.NotBefore).Expiration(c.Expires)
	if c.Scope != "" {
		b = b.Claim("scope", c.Scope)
	}
	t, err := b.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// Sign mints a token with alg: EdDSA, ES256, RS256, HS256 (with k.HS) or
// none.
func (k *Keys) Sign(tb testing.TB, alg string, c Claims) string {
	tb.Helper()
	var opt jwt.SignOption
	var hdr []jwt.Option
	if c.KeyID != "" {
		h := jws.NewHeaders()
		h.Set(jws.KeyIDKey, c.KeyID)
		hdr = append(hdr, jws.WithProtectedHeaders(h))
	}
	switch alg {
	case "EdDSA":
		opt = jwt.WithKey(jwa.EdDSA(), k.Ed, hdr...)
	case "ES256":
		opt = jwt.WithKey(jwa.ES256(), k.EC, hdr...)
	case "RS256":
		opt = jwt.WithKey(jwa.RS256(), k.RSA, hdr...)
	case "HS256":
		opt = jwt.WithKey(jwa.HS256(), k.HS, hdr...)
	case "none":
		opt = jwt.WithInsecureNoSignature()
	default:
		tb.Fatalf("unknown alg %s", alg)
	}
	raw, err := jwt.Sign(c.build(tb), opt)
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

// SignHMACWith mints an HS256 token with an arbitrary secret (for the
// algorithm-confusion case: the RSA public key as the secret).
func SignHMACWith(tb testing.TB, secret []byte, c Claims) string {
	tb.Helper()
	raw, err := jwt.Sign(c.build(tb), jwt.WithKey(jwa.HS256(), secret))
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

// Admin is an EdDSA token for sub with scope admin.
func (k *Keys) Admin(tb testing.TB, sub string) string {
	return k.Sign(tb, "EdDSA", Claims{Subject: sub, Scope: "admin"})
}

// SignEdDSAClaims mints an EdDSA token over exactly the given claims, for
// claims that Claims cannot spell (such as an exp that is a string).
func (k *Keys) SignEdDSAClaims(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	return signing + "." + enc.EncodeToString(ed25519.Sign(k.Ed, []byte(signing)))
}
