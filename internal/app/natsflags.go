package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
)

// natsFlags are the standard ways to authenticate to an external NATS
// server: a .creds file (JWT + NKey seed), a user and password (also
// accepted inside the URL, nats://USER:PASS@HOST:4222), and TLS with a CA
// and an optional client certificate.
type natsFlags struct {
	creds, user, password  string
	tlsCA, tlsCert, tlsKey string
}

func (f *natsFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (.creds: user JWT and NKey seed)")
	fs.StringVar(&f.user, "nats-user", "", "NATS user (or nats://USER:PASS@HOST:4222 in --nats)")
	fs.StringVar(&f.password, "nats-password", "", "NATS password for --nats-user")
	fs.StringVar(&f.tlsCA, "nats-tls-ca", "", "PEM file of the CA that signed the NATS server's certificate (turns TLS on)")
	fs.StringVar(&f.tlsCert, "nats-tls-cert", "", "PEM client certificate for NATS mutual TLS (with --nats-tls-key)")
	fs.StringVar(&f.tlsKey, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
}

// options turns the flags into connection options. Errors are usage
// errors naming the flag.
func (f *natsFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	if f.creds != "" {
		if _, err := os.Stat(f.creds); err != nil {
			return nil, usagef("--nats-creds: %v", err)
		}
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	if (f.user == "") != (f.password == "") {
		return nil, usagef("--nats-user and --nats-password go together")
	}
	if f.user != "" {
		opts = append(opts, nats.UserInfo(f.user, f.password))
	}
	if f.tlsCA != "" {
		opts = append(opts, nats.RootCAs(f.tlsCA))
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef("--nats-tls-cert and --nats-tls-key go together")
	}
	if f.tlsCert != "" {
		opts = append(opts, nats.ClientCert(f.tlsCert, f.tlsKey))
	}
	return opts, nil
}

// NATSPasswordFile holds the password of the embedded broker's user
// "ordermesh" in a data directory, made on first start (mode 0600).
const NATSPasswordFile = "nats-password"

// NATSUser is the embedded broker's one user.
const NATSUser = "ordermesh"

// embeddedPassword reads the embedded broker's password from dir, making
// one on first use.
func embeddedPassword(dir string) (string, error) {
	path := filepath.Join(dir, NATSPasswordFile)
	raw, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(raw))) >= 16 {
		return strings.TrimSpace(string(raw)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return pw, nil
}
