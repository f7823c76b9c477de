package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// NATSAuthFile is the nats-server configuration fragment `setup
// --identities` writes: every identity's user and permissions.
const NATSAuthFile = "nats-auth.conf"

// writeIdentities writes, in dir, what a scaled-out deployment's secrets
// are: a broker password per service (nats-SERVICE.password) and one for
// the administrative user (nats-ordermesh.password), the broker's
// authorization block with their bcrypt hashes and each service's
// permissions (nats-auth.conf, to include in nats-server.conf), and the
// payment-token key pair (payment-token.key for serve payments only,
// payment-token.pub for serve orders). Files that exist are kept, so it
// can run again; it returns the paths it wrote or kept.
func writeIdentities(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--identities: %w", err)
	}
	var paths []string
	secret := func(name string, minLen int, mk func() (string, error)) (string, error) {
		paths = append(paths, filepath.Join(dir, name))
		return dataSecret(dir, name, minLen, mk)
	}
	var passwords []string
	for _, user := range append([]string{NATSUser}, brokerServices...) {
		pw, err := secret(NATSIdentityFile(user), 16, randomHex)
		if err != nil {
			return nil, err
		}
		passwords = append(passwords, pw)
	}
	confPath := filepath.Join(dir, NATSAuthFile)
	conf, err := authConfig(passwords[0], passwords[1:])
	if err == nil {
		err = os.WriteFile(confPath, []byte(conf), 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", confPath, err)
	}
	paths = append(paths, confPath)
	keyText, err := secret(PaymentTokenKeyFile, 43, newSealingKey)
	if err != nil {
		return nil, err
	}
	key, err := sealed.ParseKey(keyText)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, PaymentTokenKeyFile), err)
	}
	pubPath := filepath.Join(dir, PaymentTokenPublicKeyFile)
	if err := os.WriteFile(pubPath, []byte(key.Public().String()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", pubPath, err)
	}
	return append(paths, pubPath), nil
}

// PaymentTokenPublicKeyFile holds the public half of PaymentTokenKeyFile.
const PaymentTokenPublicKeyFile = "payment-token.pub"

// authConfig is the nats-server authorization block for the
// administrative user's password admin and each of brokerServices' (in
// order), as bcrypt hashes.
func authConfig(admin string, services []string) (string, error) {
	hash := func(pw string) (string, error) {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		return fmt.Sprintf("%q", h), err
	}
	h, err := hash(admin)
	if err != nil {
		return "", err
	}
	var conf strings.Builder
	conf.WriteString("# ordermesh's broker identities, written by `ordermesh setup --identities`.\n")
	conf.WriteString("# Include it in nats-server.conf (include ./" + NATSAuthFile + "). The user\n")
	conf.WriteString("# \"ordermesh\" is the administrative one (setup, dlq); each service may\n")
	conf.WriteString("# publish only its own events and may not change the streams.\n")
	conf.WriteString("authorization {\n  users = [\n")
	fmt.Fprintf(&conf, "    {user: %q, password: %s}", NATSUser, h)
	for i, svc := range brokerServices {
		h, err := hash(services[i])
		if err != nil {
			return "", err
		}
		conf.WriteString(",\n" + brokerIdentity(svc, services[i]).ServerConfig(h))
	}
	conf.WriteString("\n  ]\n}\n")
	return conf.String(), nil
}
