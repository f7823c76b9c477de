package event_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

func TestEverySchemaCompiles(t *testing.T) {
	if _, err := event.LoadSchemas(); err != nil {
		t.Fatal(err)
	}
}

func TestSchemasAcceptTheGoStructsAndRejectBadData(t *testing.T) {
	s, err := event.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	addr := event.Address{Name: "Ada", Line1: "1 Main St", City: "Paris", PostalCode: "75001", Country: "FR"}
	lines := []event.Line{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 500}}
	good := map[string]any{
		event.OrderPlaced:       event.Placed{OrderID: "o1", CustomerID: "c1", Items: lines, TotalCents: 1000, Currency: "EUR", PaymentToken: "tok_ok", ShippingAddress: addr},
		event.OrderConfirmed:    event.Confirmed{OrderID: "o1", CustomerID: "c1", Items: lines, ShippingAddress: addr},
		event.OrderCompleted:    event.OrderRef{OrderID: "o1", CustomerID: "c1"},
		event.OrderCancelled:    event.Cancelled{OrderID: "o1", CustomerID: "c1", Reason: event.ReasonTimeout},
		event.StockReserved:     event.Reserved{OrderID: "o1", Items: lines},
		event.StockRejected:     event.Rejected{OrderID: "o1", SKU: "SKU-1", Reason: "insufficient stock"},
		event.StockReleased:     event.OrderRef{OrderID: "o1"},
		event.StockCommitted:    event.OrderRef{OrderID: "o1"},
		event.PaymentAuthorized: event.Payment{OrderID: "o1", AmountCents: 1000, Currency: "EUR", ProviderRef: "auth_1"},
		event.PaymentFailed:     event.PaymentFailure{OrderID: "o1", Reason: "declined"},
		event.PaymentCaptured:   event.Payment{OrderID: "o1", AmountCents: 1000, Currency: "EUR", ProviderRef: "cap_1"},
		event.PaymentVoided:     event.Payment{OrderID: "o1", AmountCents: 1000, Currency: "EUR", ProviderRef: "void_1"},
		event.PaymentRefunded:   event.Payment{OrderID: "o1", AmountCents: 1000, Currency: "EUR", ProviderRef: "ref_1"},
		event.ShipmentCreated:   event.Shipment{OrderID: "o1", ShipmentID: "s1", Carrier: "ordermesh-post", Tracking: "OM1"},
		event.ProductUpdated:    event.Product{SKU: "SKU-1", Name: "Mug", PriceCents: 500, Currency: "EUR", Available: 3},
		event.EndpointDisabled:  event.Endpoint{EndpointID: "ep_1", URL: "https://shop.example/hooks", Reason: "410 Gone"},
	}
	for _, typ := range event.Types {
		t.Run(typ, func(t *testing.T) {
			v, ok := good[typ]
			if !ok {
				t.Fatalf("no sample for %s", typ)
			}
			raw, _ := json.Marshal(v)
			if err := s.Validate(typ, raw); err != nil {
				t.Fatalf("valid %s rejected: %v", typ, err)
			}
			var m map[string]any
			json.Unmarshal(raw, &m)
			m["unexpected_field"] = 1
			bad, _ := json.Marshal(m)
			if err := s.Validate(typ, bad); err == nil {
				t.Fatalf("%s with an unknown field accepted", typ)
			}
		})
	}
	if err := s.Validate(event.OrderCancelled, []byte(`{"order_id":"o","customer_id":"c","reason":"bored"}`)); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("unknown cancel reason accepted: %v", err)
	}
	if err := s.Validate("order.teleported", []byte(`{}`)); err == nil {
		t.Fatal("a type outside the catalog was accepted")
	}
}

// TestValidDataIsRememberedOnlyForItsTypeAndBytes: the cache that spares a
// second check of the same event must never let other data through.
func TestValidDataIsRememberedOnlyForItsTypeAndBytes(t *testing.T) {
	s, err := event.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	ref := []byte(`{"order_id":"o1","customer_id":"c1"}`)
	for range 2 { // the second time from the cache
		if err := s.Validate(event.OrderCompleted, ref); err != nil {
			t.Fatal(err)
		}
	}
	// Valid for order.completed, but stock.rejected needs a sku and a reason.
	if err := s.Validate(event.StockRejected, ref); err == nil {
		t.Fatal("data remembered as valid for one type passed for another")
	}
	if err := s.Validate(event.OrderCompleted, []byte(`{"order_id":"o1","customer_id":"c1","x":1}`)); err == nil {
		t.Fatal("other bytes passed after valid ones")
	}
	for i := range 5000 { // two generations and more: old entries go, checks stay right
		if err := s.Validate(event.OrderCompleted, []byte(`{"order_id":"o`+strconv.Itoa(i)+`","customer_id":"c"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Validate(event.OrderCompleted, ref); err != nil {
		t.Fatal(err)
	}
}
