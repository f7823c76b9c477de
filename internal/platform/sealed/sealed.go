// Package sealed seals a short secret (a card's payment token) to one
// recipient with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// ChaCha20-Poly1305), bound to a subject (the order id), so that the
// services and merchants that see the sealed form can neither read it nor
// move it to another order. Only the holder of the private key (the
// payments service) opens it.
package sealed

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// prefix marks a sealed value and its suite, so a later suite can be told
// apart.
const prefix = "hpke1."

// info binds a sealed value to ordermesh's use of it.
const info = "ordermesh payment token v1"

var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// Key is a recipient's private key.
type Key struct{ k hpke.PrivateKey }

// PublicKey is what senders seal to.
type PublicKey struct{ k hpke.PublicKey }

// NewKey makes a fresh key pair.
func NewKey() (Key, error) {
	k, err := kem.GenerateKey()
	if err != nil {
		return Key{}, fmt.Errorf("make sealing key: %w", err)
	}
	return Key{k}, nil
}

// ParseKey reads a private key in the form Key.String gives.
func ParseKey(s string) (Key, error) {
	k, err := parse(s, "sealing key", kem.NewPrivateKey)
	return Key{k}, err
}

// ParsePublicKey reads a public key in the form PublicKey.String gives.
func ParsePublicKey(s string) (PublicKey, error) {
	k, err := parse(s, "sealing public key", kem.NewPublicKey)
	return PublicKey{k}, err
}

// parse decodes s, a key called what in base64url, with decode.
func parse[K any](s, what string, decode func([]byte) (K, error)) (K, error) {
	var zero K
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return zero, fmt.Errorf("not a %s: want 43 characters of base64url (ordermesh setup --identities makes one)", what)
	}
	k, err := decode(raw)
	if err != nil {
		return zero, fmt.Errorf("not a %s: %w", what, err)
	}
	return k, nil
}

// Load is a key given as text, or else read from file, as a flag pair
// (--NAME and --NAME-file) gives it; parse reads the text.
func Load[K any](text, file, name string, parse func(string) (K, error)) (K, error) {
	if text == "" && file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			var zero K
			return zero, fmt.Errorf("--%s-file: %w", name, err)
		}
		text = string(raw)
	}
	k, err := parse(text)
	if err != nil {
		return k, fmt.Errorf("--%s: %w", name, err)
	}
	return k, nil
}

// String is the private key in base64url, for a secret file.
func (k Key) String() string {
	raw, err := k.k.Bytes()
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// Public is the key senders seal to.
func (k Key) Public() PublicKey { return PublicKey{k.k.PublicKey()} }

// IsZero says whether k is unset.
func (k Key) IsZero() bool { return k.k == nil }

// String is the public key in base64url.
func (p PublicKey) String() string { return base64.RawURLEncoding.EncodeToString(p.k.Bytes()) }

// IsZero says whether p is unset.
func (p PublicKey) IsZero() bool { return p.k == nil }

// Seal seals secret to p for subject.
func (p PublicKey) Seal(subject, secret string) (string, error) {
	if p.k == nil {
		return "", errors.New("seal: no public key")
	}
	enc, s, err := hpke.NewSender(p.k, kdf, aead, []byte(info))
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	ct, err := s.Seal([]byte(subject), []byte(secret))
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(append(enc, ct...)), nil
}

// ErrNotOpened is returned by Open for a value that is not sealed to this
// key for that subject (forged, damaged, or moved from another order).
var ErrNotOpened = errors.New("sealed value does not open with this key for this subject")

// Open opens a value Seal made for subject.
func (k Key) Open(subject, sealedValue string) (string, error) {
	if k.k == nil {
		return "", errors.New("open: no key")
	}
	rest, ok := strings.CutPrefix(sealedValue, prefix)
	if !ok {
		return "", ErrNotOpened
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) < encSize {
		return "", ErrNotOpened
	}
	r, err := hpke.NewRecipient(raw[:encSize], k.k, kdf, aead, []byte(info))
	if err != nil {
		return "", ErrNotOpened
	}
	pt, err := r.Open([]byte(subject), raw[encSize:])
	if err != nil {
		return "", ErrNotOpened
	}
	return string(pt), nil
}

// encSize is the size of X25519's encapsulated key.
const encSize = 32

// IsSealed says whether v is in the form Seal gives (not whether it
// opens).
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }
