// Package stdwebhook signs and verifies webhooks as the Standard Webhooks
// specification says (https://www.standardwebhooks.com): whsec_ secrets,
// the webhook-id, webhook-timestamp and webhook-signature headers, and
// v1 HMAC-SHA256 signatures of id.timestamp.body. Merchant webhooks
// (notification/webhook) and the payment provider's notifications (psp
// signs, payment verifies) both use it.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"

	// SecretPrefix starts every signing secret.
	SecretPrefix = "whsec_"
)

// NewSecret returns a fresh signing secret: "whsec_" + base64 of 32 random
// bytes.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// sign returns "v1,<base64 HMAC-SHA256 of id.timestamp.body>" with secret.
func sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return "", errors.New("webhook secret is not whsec_ + base64")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Signatures returns the webhook-signature header value: one signature per
// secret, space-separated (two while a rotated-out secret is in grace).
func Signatures(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := sign(s, id, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// Verification errors.
var (
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrStale          = errors.New("webhook timestamp is too old or too far in the future")
	ErrBadSignature   = errors.New("no webhook signature matches")
)

// Tolerance is how far a webhook's timestamp may be from now.
const Tolerance = 5 * time.Minute

// Verify checks a received webhook: the headers are present, the timestamp
// is within Tolerance of now, and one of the space-separated v1 signatures
// is the HMAC of id.timestamp.body with secret. It returns the webhook-id.
func Verify(secret string, h interface{ Get(string) string }, body []byte, now time.Time) (string, error) {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return "", ErrMissingHeaders
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrMissingHeaders
	}
	at := time.Unix(secs, 0)
	if now.Sub(at) > Tolerance || at.Sub(now) > Tolerance {
		return "", ErrStale
	}
	want, err := sign(secret, id, at, body)
	if err != nil {
		return "", err
	}
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return id, nil
		}
	}
	return "", ErrBadSignature
}

// Sign returns the Standard Webhooks headers for body, signed with secret.
func Sign(secret, id string, at time.Time, body []byte) (map[string]string, error) {
	sig, err := sign(secret, id, at, body)
	if err != nil {
		return nil, err
	}
	return map[string]string{HeaderID: id, HeaderTimestamp: strconv.FormatInt(at.Unix(), 10), HeaderSignature: sig}, nil
}
