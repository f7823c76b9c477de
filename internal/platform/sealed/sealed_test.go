package sealed_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

func TestSealOpens(t *testing.T) {
	key, err := sealed.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sealed.ParsePublicKey(key.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := pub.Seal("order-1", "tok_ok")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "tok_ok") {
		t.Fatalf("sealed value shows the secret: %s", s)
	}
	again, err := sealed.ParseKey(key.String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.Open("order-1", s)
	if err != nil || got != "tok_ok" {
		t.Fatalf("Open = %q, %v; want tok_ok", got, err)
	}
}

func TestSealRefuses(t *testing.T) {
	key, _ := sealed.NewKey()
	other, _ := sealed.NewKey()
	s, err := key.Public().Seal("order-1", "tok_ok")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		key     sealed.Key
		subject string
		value   string
	}{
		"OtherOrder": {key, "order-2", s},
		"OtherKey":   {other, "order-1", s},
		"Plaintext":  {key, "order-1", "tok_ok"},
		"Truncated":  {key, "order-1", s[:len(s)-4]},
		"NotBase64":  {key, "order-1", "hpke1.!!!"},
		"OnlyPrefix": {key, "order-1", "hpke1."},
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := tc.key.Open(tc.subject, tc.value); !errors.Is(err, sealed.ErrNotOpened) {
				t.Fatalf("Open = %q, %v; want ErrNotOpened", got, err)
			}
		})
	}
	if _, err := sealed.ParseKey("short"); err == nil {
		t.Fatal("ParseKey took a malformed key")
	}
}
