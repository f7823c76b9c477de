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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/ordermesh/ordermesh/internal/platform/every"
)

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
