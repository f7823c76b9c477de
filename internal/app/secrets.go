package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// PaymentTokenKeyFile holds, in a data directory, the payments service's
// private key that opens sealed payment tokens (made on first start, mode
// 0600).
const PaymentTokenKeyFile = "payment-token.key"

// dataSecret reads the secret in file name of dir, making it with mk on
// first use (mode 0600). A file that holds less than minLen characters is
// made anew.
func dataSecret(dir, name string, minLen int, mk func() (string, error)) (string, error) {
	path := filepath.Join(dir, name)
	raw, err := os.ReadFile(path)
	if v := strings.TrimSpace(string(raw)); err == nil && len(v) >= minLen {
		return v, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v, err := mk()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

// newSealingKey is a fresh payment-token key in its text form.
func newSealingKey() (string, error) {
	k, err := sealed.NewKey()
	if err != nil {
		return "", err
	}
	return k.String(), nil
}

// sealPaymentTokens gives payments its token key and orders the public
// half. An embedded node keeps the key in its data directory; a node that
// runs payments with the key given hands its public half to orders in the
// same process. serve orders and serve payments are given theirs.
func (n *Node) sealPaymentTokens() error {
	pay, ord := &n.cfg.Payments, &n.cfg.Orders
	hasPayments := slices.Contains(n.cfg.Services, "payments")
	if n.cfg.DataDir != "" && pay.TokenKeyText == "" && pay.TokenKeyFile == "" && pay.TokenKey.IsZero() && (hasPayments || slices.Contains(n.cfg.Services, "orders")) {
		text, err := dataSecret(n.cfg.DataDir, PaymentTokenKeyFile, 43, newSealingKey)
		if err != nil {
			return err
		}
		pay.TokenKeyText = text
	}
	if pay.TokenKey.IsZero() && pay.TokenKeyText != "" {
		key, err := sealed.ParseKey(pay.TokenKeyText)
		if err != nil {
			return fmt.Errorf("--payment-token-key: %w", err)
		}
		pay.TokenKey = key
	}
	if ord.TokenPublicKey.IsZero() && ord.TokenPublicKeyText == "" && ord.TokenPublicKeyFile == "" && !pay.TokenKey.IsZero() {
		ord.TokenPublicKey = pay.TokenKey.Public()
	}
	return nil
}

// brokerServices are the services with a broker identity of their own:
// every one.
var brokerServices = Services

// brokerIdentity is service's broker identity with password.
func brokerIdentity(service, password string) bus.Identity {
	return bus.Identity{Service: service, Password: password, Publishes: event.Published(service), Replays: replays(service)}
}

// NATSIdentityFile is the file, in a data directory or the directory
// `setup --identities` writes, of service's broker password.
func NATSIdentityFile(service string) string { return "nats-" + service + ".password" }

// brokerIdentities are the services' broker users of the embedded broker
// in data directory dir, with their passwords (made on first start).
func brokerIdentities(dir string) ([]bus.Identity, error) {
	var ids []bus.Identity
	for _, svc := range brokerServices {
		pw, err := dataSecret(dir, NATSIdentityFile(svc), 16, randomHex)
		if err != nil {
			return nil, err
		}
		ids = append(ids, brokerIdentity(svc, pw))
	}
	return ids, nil
}

// eventSources is the source each event type must come from.
func eventSources() map[string]string {
	out := map[string]string{}
	for typ, svc := range event.Publishers {
		out[typ] = event.Source(svc)
	}
	return out
}

// connectServices gives each service of an embedded node a connection
// and bus of its own, as its broker identity: what it publishes, the
// broker checks against what it may.
func (n *Node) connectServices() error {
	if n.embedded == nil {
		return nil
	}
	n.buses = map[string]*bus.Bus{}
	for _, svc := range n.cfg.Services {
		if !slices.Contains(brokerServices, svc) {
			continue
		}
		pw, err := dataSecret(n.cfg.DataDir, NATSIdentityFile(svc), 16, randomHex)
		if err != nil {
			return err
		}
		nc, err := n.embedded.ConnectAs("ordermesh-"+svc, svc, pw)
		if err != nil {
			return err
		}
		if n.buses[svc], err = n.Bus.As(nc); err != nil {
			nc.Close()
			return err
		}
	}
	return nil
}

// busFor is the bus service uses: its own identity's in an embedded node,
// else the node's (serve connects as whatever identity it is given).
func (n *Node) busFor(service string) bus.Broker {
	if n.rabbit != nil {
		return n.rabbit
	}
	if b := n.buses[service]; b != nil {
		return b
	}
	return n.Bus
}
