package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/gateway"
)

func cmdToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "Usage: ordermesh token --sub ID --scopes SCOPE[,SCOPE…] [flags]\n\nMints a JWT signed with the development key of `ordermesh run` (DATA/"+gateway.DevKeyFile+")\nor with --key FILE (PKCS#8 PEM: Ed25519 → EdDSA, P-256 → ES256, RSA → RS256),\nor with the shared secret of a gateway started with --jwt-secret (--jwt-secret-file FILE → HS256).\nScopes: "+strings.Join(gateway.Scopes, ", ")+".", stderr)
	sub := fs.String("sub", "", "subject: the customer id the token acts as (orders:read sees only its orders)")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	data := fs.String("data", "./data", "data directory of `ordermesh run` (holds the dev key)")
	keyFile := fs.String("key", "", "private key file (default DATA/"+gateway.DevKeyFile+")")
	secretFile := fs.String("jwt-secret-file", "", "file holding the gateway's --jwt-secret: sign with HS256 instead of a key")
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
	req := gateway.TokenRequest{Subject: *sub, Scopes: splitScopes(*scopes), TTL: *ttl, Issuer: *issuer, Audience: *audience}
	tok, err := mintToken(*secretFile, *keyFile, *data, req)
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// mintToken signs req with the secret in secretFile (HS256) if one is
// given, else with the private key in keyFile (default: the dev key in
// data).
func mintToken(secretFile, keyFile, data string, req gateway.TokenRequest) (string, error) {
	if secretFile != "" {
		if keyFile != "" {
			return "", usagef("--jwt-secret-file and --key: pass one")
		}
		secret, err := os.ReadFile(secretFile)
		if err != nil {
			return "", fmt.Errorf("--jwt-secret-file: %w", err)
		}
		return gateway.MintHS256(bytes.TrimSpace(secret), req)
	}
	if keyFile == "" {
		keyFile = filepath.Join(data, gateway.DevKeyFile)
	}
	key, err := gateway.LoadSigningKey(keyFile)
	if err != nil {
		return "", fmt.Errorf("signing key: %w (run `ordermesh run --data DIR` once to make a dev key, or pass --key FILE)", err)
	}
	return gateway.Mint(key, req)
}
