package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenRequest is what Mint puts in a token.
type TokenRequest struct {
	Subject          string
	Scopes           []string
	TTL              time.Duration
	Issuer, Audience string
}

// Mint signs a JWT with key: EdDSA for Ed25519, ES256 for P-256, RS256 for
// RSA.
func Mint(key crypto.Signer, req TokenRequest) (string, error) {
	var method jwt.SigningMethod
	switch k := key.Public().(type) {
	case ed25519.PublicKey:
		method = jwt.SigningMethodEdDSA
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return "", fmt.Errorf("ECDSA key on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		method = jwt.SigningMethodES256
	case *rsa.PublicKey:
		method = jwt.SigningMethodRS256
	default:
		return "", fmt.Errorf("cannot sign with a %T", k)
	}
	return mint(method, key, req)
}

// MintHS256 signs a JWT with a shared secret (HS256), for a gateway
// started with --jwt-secret: at least 32 bytes, as the gateway requires.
func MintHS256(secret []byte, req TokenRequest) (string, error) {
	if len(secret) < 32 {
		return "", fmt.Errorf("the secret is %d bytes; HS256 needs at least 32 random bytes", len(secret))
	}
	return mint(jwt.SigningMethodHS256, secret, req)
}

func mint(method jwt.SigningMethod, key any, req TokenRequest) (string, error) {
	if req.Subject == "" {
		return "", errors.New("--sub: give the subject the token is for")
	}
	if err := CheckScopes(req.Scopes); err != nil {
		return "", fmt.Errorf("--scopes: %w", err)
	}
	if req.TTL <= 0 {
		return "", errors.New("--ttl must be positive, such as 1h")
	}
	if req.Issuer == "" {
		req.Issuer = DefaultIssuer
	}
	if req.Audience == "" {
		req.Audience = DefaultAudience
	}
	now := time.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: req.Subject, Issuer: req.Issuer, Audience: jwt.ClaimStrings{req.Audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(req.TTL)),
		},
		Scope: strings.Join(req.Scopes, " "),
	}
	return jwt.NewWithClaims(method, claims).SignedString(key)
}

// DevKeyFile is the development signing key `ordermesh run` keeps in its
// data directory.
const DevKeyFile = "dev-signing-key.pem"

// LoadSigningKey reads a PKCS#8 PEM private key.
func LoadSigningKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" (PKCS#8)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", path, k)
	}
	return s, nil
}

// EnsureDevKey returns the path of dir's development signing key, creating
// an Ed25519 key (mode 0600) on first use.
func EnsureDevKey(dir string) (string, error) {
	path := filepath.Join(dir, DevKeyFile)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
