package order_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// TestAnOrdersLife drives the orders service through its consumer and
// its commands on a real database, as a customer sees it: an order is
// priced from the catalog, a retry with the same key answers the same
// order, payment confirms it, a shipped order can no longer be cancelled,
// and an order rejected for stock stays cancelled whatever comes late.
func TestAnOrdersLife(t *testing.T) {
	sets := []sqldb.Migrations{outbox.Migrations(), inbox.Migrations(), order.Migrations()}
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		key, err := sealed.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		svc := order.New(order.Config{DB: db, Outbox: outbox.New(db), TokenPublicKey: key.Public()})
		_, handle := svc.Consumer()
		deliver := func(typ, orderID string, data any) {
			t.Helper()
			for _, err := range handle(ctx, []bus.Event{bustest.NewEvent(t, typ, orderID, data)}) {
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
			}
		}
		deliver(event.ProductUpdated, "MUG", event.Product{SKU: "MUG", Name: "Mug", PriceCents: 1250, Currency: "EUR", Available: 5})
		place := func(idemKey string) order.Placed {
			t.Helper()
			req := order.PlaceRequest{CustomerID: "ada", Items: []order.ItemRequest{{SKU: "MUG", Quantity: 2}}, PaymentToken: "tok_ok",
				ShippingAddress: event.Address{Name: "Ada", Line1: "1 Main St", City: "Paris", PostalCode: "75001", Country: "FR"}}
			raw, _ := json.Marshal(req)
			p, err := svc.Place(ctx, "ada", idemKey, raw, req)
			if err != nil {
				t.Fatalf("place: %v", err)
			}
			return p
		}
		status := func(id string) order.Order {
			t.Helper()
			o, err := svc.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return o
		}

		first := place("k1")
		if o := status(first.OrderID); o.Status != order.Pending || o.TotalCents != 2500 || o.Currency != "EUR" {
			t.Fatalf("a new order: %s, %d %s; want pending, 2500 EUR from the catalog", o.Status, o.TotalCents, o.Currency)
		}
		if again := place("k1"); !again.Replayed || again.OrderID != first.OrderID {
			t.Fatalf("the same key again: order %s (replayed %v); want the first answer, %s", again.OrderID, again.Replayed, first.OrderID)
		}
		deliver(event.PaymentAuthorized, first.OrderID, event.Payment{OrderID: first.OrderID, AmountCents: 2500, Currency: "EUR"})
		if o := status(first.OrderID); o.Status != order.Confirmed {
			t.Fatalf("after payment.authorized: %s; want confirmed", o.Status)
		}
		deliver(event.ShipmentCreated, first.OrderID, event.Shipment{OrderID: first.OrderID, ShipmentID: "s1", Carrier: "c", Tracking: "t"})
		if _, err := svc.Cancel(ctx, first.OrderID); apperr.KindOf(err) != apperr.Conflict {
			t.Fatalf("cancelling a shipped order: %v; want a conflict", err)
		}
		deliver(event.PaymentCaptured, first.OrderID, event.Payment{OrderID: first.OrderID, AmountCents: 2500, Currency: "EUR"})
		if o := status(first.OrderID); o.Status != order.Completed {
			t.Fatalf("shipped and captured: %s; want completed", o.Status)
		}

		second := place("k2")
		deliver(event.StockRejected, second.OrderID, event.Rejected{OrderID: second.OrderID, SKU: "MUG", Reason: "insufficient stock"})
		deliver(event.PaymentAuthorized, second.OrderID, event.Payment{OrderID: second.OrderID, AmountCents: 2500, Currency: "EUR"})
		if o := status(second.OrderID); o.Status != order.Cancelled || o.CancelReason != event.ReasonOutOfStock {
			t.Fatalf("rejected for stock, then a late authorization: %s (%s); want cancelled for out_of_stock", o.Status, o.CancelReason)
		}
	})
}
