package pspapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// TestTheWireFormatIsTheContract: both sides of the provider's API (the
// payments client and the simulator) read these bodies; the names on the
// wire, and the idempotency key kept off the body, are what both rely on.
func TestTheWireFormatIsTheContract(t *testing.T) {
	raw, _ := json.Marshal(pspapi.Request{OrderID: "o1", AmountCents: 1250, Currency: "EUR", Token: "tok_ok", IdempotencyKey: "k"})
	if string(raw) != `{"order_id":"o1","amount_cents":1250,"currency":"EUR","token":"tok_ok"}` {
		t.Errorf("request body = %s", raw)
	}
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	raw, _ = json.Marshal(pspapi.Operation{ID: 7, Op: pspapi.OpVoid, OrderID: "o1", AmountCents: 1250, Currency: "EUR", Outcome: pspapi.OutcomeDone, At: at})
	var back map[string]any
	json.Unmarshal(raw, &back)
	for k, want := range map[string]any{"id": 7.0, "op": "void", "order_id": "o1", "outcome": "done", "at": "2026-12-07T10:00:00Z"} {
		if back[k] != want {
			t.Errorf("operation %s = %v, want %v (%s)", k, back[k], want, raw)
		}
	}
	if _, ok := back["reason"]; ok {
		t.Errorf("an empty reason is on the wire: %s", raw)
	}
}
