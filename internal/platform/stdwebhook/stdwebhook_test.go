package stdwebhook_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
)

// TestSignVerify: what Sign produces verifies here and with the Standard
// Webhooks reference library; stale, forged and unsigned ones do not.
func TestSignVerify(t *testing.T) {
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := stdwebhook.NewSecret()
	now := time.Now()
	body := []byte(`{"order_id":"o1"}`)
	headers := func(secret string, at time.Time) http.Header {
		hs, err := stdwebhook.Sign(secret, "msg_1", at, body)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		for k, v := range hs {
			h.Set(k, v)
		}
		return h
	}
	good := headers(secret, now)
	if id, err := stdwebhook.Verify(secret, good, body, now); err != nil || id != "msg_1" {
		t.Fatalf("Verify = %q, %v", id, err)
	}
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(body, good); err != nil {
		t.Fatalf("the reference library refuses our signature: %v", err)
	}
	for name, c := range map[string]struct {
		h    http.Header
		body []byte
		want error
	}{
		"other secret": {headers(other, now), body, stdwebhook.ErrBadSignature},
		"other body":   {good, []byte(`{"order_id":"o2"}`), stdwebhook.ErrBadSignature},
		"stale":        {headers(secret, now.Add(-stdwebhook.Tolerance-time.Minute)), body, stdwebhook.ErrStale},
		"future":       {headers(secret, now.Add(stdwebhook.Tolerance+time.Minute)), body, stdwebhook.ErrStale},
		"unsigned":     {http.Header{}, body, stdwebhook.ErrMissingHeaders},
	} {
		if _, err := stdwebhook.Verify(secret, c.h, c.body, now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
	// While a secret is rotated out, both sign; either verifies.
	sigs, err := stdwebhook.Signatures([]string{other, secret}, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	good.Set(stdwebhook.HeaderSignature, sigs)
	if _, err := stdwebhook.Verify(secret, good, body, now); err != nil {
		t.Fatalf("two signatures, one ours: %v", err)
	}
}
