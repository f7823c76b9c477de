package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	if n.cfg.DataDir != "" && pay.TokenKeyText == "" && pay.TokenKey.IsZero() && (hasPayments || slices.Contains(n.cfg.Services, "orders")) {
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
	if ord.TokenPublicKey.IsZero() && ord.TokenPublicKeyText == "" && !pay.TokenKey.IsZero() {
		ord.TokenPublicKey = pay.TokenKey.Public()
	}
	return nil
}
