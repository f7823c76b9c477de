package psp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// TestTheProviderAPIAsAMerchantSeesIt: over HTTP, on a real ledger, a
// retried call answers the first answer (no second charge), money moves
// only as a card network allows (no void after a capture), and a caller
// without the key is refused.
func TestTheProviderAPIAsAMerchantSeesIt(t *testing.T) {
	sqldbtest.Each(t, []sqldb.Migrations{Migrations()}, func(t *testing.T, _ string, db *sqldb.DB) {
		srv := httptest.NewServer(New(db, Config{APIKey: "key_1"}, nil).ProviderAPI())
		defer srv.Close()
		call := func(op, idemKey, apiKey string, req pspapi.Request) (int, pspapi.Operation) {
			t.Helper()
			body, _ := json.Marshal(req)
			r, _ := http.NewRequest(http.MethodPost, srv.URL+"/psp/v1/"+op, bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+apiKey)
			r.Header.Set("Idempotency-Key", idemKey)
			r.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var res pspapi.Operation
			json.NewDecoder(resp.Body).Decode(&res)
			return resp.StatusCode, res
		}
		req := pspapi.Request{OrderID: "o1", AmountCents: 500, Currency: "EUR", Token: TokenOK}
		if code, _ := call(pspapi.OpAuthorize, "o1", "wrong", req); code != http.StatusUnauthorized {
			t.Fatalf("a wrong API key: %d; want 401", code)
		}
		_, first := call(pspapi.OpAuthorize, "o1", "key_1", req)
		_, again := call(pspapi.OpAuthorize, "o1", "key_1", req)
		if first.Outcome != pspapi.OutcomeApproved || again.ID != first.ID {
			t.Fatalf("authorize, then its retry: %+v, %+v; want one approved operation answered twice", first, again)
		}
		if _, c := call(pspapi.OpCapture, "o1", "key_1", req); c.Outcome != pspapi.OutcomeDone || c.AmountCents != 500 {
			t.Fatalf("capture: %+v; want done, 500", c)
		}
		if _, v := call(pspapi.OpVoid, "o1/void", "key_1", req); v.Outcome == pspapi.OutcomeDone {
			t.Fatalf("a void after the capture: %+v; want it refused (refund instead)", v)
		}
		declined := pspapi.Request{OrderID: "o2", AmountCents: 500, Currency: "EUR", Token: TokenDecline}
		if _, d := call(pspapi.OpAuthorize, "o2", "key_1", declined); d.Outcome != pspapi.OutcomeDeclined || d.Reason != "card_declined" {
			t.Fatalf("a declining card: %+v; want declined, card_declined", d)
		}
	})
}
