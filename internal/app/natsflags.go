package app

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsFlags are the standard ways to authenticate to an external NATS
// server: a .creds file (JWT + NKey seed), a user and password (also
// accepted inside the URL, nats://USER:PASS@HOST:4222), and TLS with a CA
// and an optional client certificate.
type natsFlags struct {
	creds, user, password  string
	passwordFile           string
	tlsCA, tlsCert, tlsKey string
}

func (f *natsFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (.creds: user JWT and NKey seed)")
	fs.StringVar(&f.user, "nats-user", "", "NATS user (or nats://USER:PASS@HOST:4222 in --nats)")
	fs.StringVar(&f.password, "nats-password", "", "NATS password for --nats-user")
	fs.StringVar(&f.passwordFile, "nats-password-file", "", "file holding the NATS password for --nats-user (each service its own: setup --identities writes DIR/nats-SERVICE.password)")
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
	if f.passwordFile != "" {
		if f.password != "" {
			return nil, usagef("--nats-password and --nats-password-file: give one")
		}
		raw, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, usagef("--nats-password-file: %v", err)
		}
		f.password = strings.TrimSpace(string(raw))
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
	return dataSecret(dir, NATSPasswordFile, 16, randomHex)
}

// randomHex is 24 random bytes in hex.
func randomHex() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// streamFlags say how the streams are set up on a cluster.
type streamFlags struct {
	replicas int
	maxBytes int64
	cluster  string
	tags     string
}

func (f *streamFlags) register(fs interface {
	IntVar(*int, string, int, string)
	Int64Var(*int64, string, int64, string)
	StringVar(*string, string, string, string)
}) {
	fs.IntVar(&f.replicas, "replicas", 0, "replicas of the streams (3 on a 3-node cluster); 0 keeps what they have (1 for new ones), and they are never lowered")
	fs.Int64Var(&f.maxBytes, "stream-max-bytes", 0, "cap on the EVENTS stream's storage in bytes (0: none, or the cap it has)")
	fs.StringVar(&f.cluster, "stream-cluster", "", "place the streams in this NATS cluster")
	fs.StringVar(&f.tags, "stream-tags", "", "place the streams on servers with these tags (comma-separated)")
}

func (f *streamFlags) validate() error {
	if f.replicas < 0 || f.replicas > 5 {
		return usagef("--replicas must be 0 to 5, got %d", f.replicas)
	}
	if f.maxBytes < 0 {
		return usagef("--stream-max-bytes must not be negative")
	}
	return nil
}

// config fills the stream settings of cfg.
func (f *streamFlags) config(cfg *Config) {
	cfg.Replicas, cfg.StreamMaxBytes = f.replicas, f.maxBytes
	if f.cluster != "" || f.tags != "" {
		cfg.Placement = &jetstream.Placement{Cluster: f.cluster}
		for _, t := range strings.Split(f.tags, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.Placement.Tags = append(cfg.Placement.Tags, t)
			}
		}
	}
}
