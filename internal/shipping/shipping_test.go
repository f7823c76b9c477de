package shipping_test

import (
	"context"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// TestOneShipmentPerConfirmedOrder: a confirmed order ships once, however
// often its order.confirmed comes (a redelivery, or a copy with another
// event id); an order cancelled before its confirmation arrives never
// ships.
func TestOneShipmentPerConfirmedOrder(t *testing.T) {
	sets := []sqldb.Migrations{outbox.Migrations(), inbox.Migrations(), shipping.Migrations()}
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		_, handle := shipping.New(db, outbox.New(db)).Consumer()
		deliver := func(evs ...bus.Event) {
			t.Helper()
			for _, err := range handle(ctx, evs) {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		confirmed := func(id string) bus.Event {
			return bustest.NewEvent(t, event.OrderConfirmed, id, event.Confirmed{OrderID: id, CustomerID: "c"})
		}
		once := confirmed("o1")
		deliver(once, confirmed("o1"))
		deliver(once)
		deliver(bustest.NewEvent(t, event.OrderCancelled, "o2", event.Cancelled{OrderID: "o2", Reason: event.ReasonTimeout}))
		deliver(confirmed("o2"))
		for id, want := range map[string]int{"o1": 1, "o2": 0} {
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM outbox WHERE type = ? AND subject = ?", event.ShipmentCreated, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != want {
				t.Errorf("order %s: %d shipment.created; want %d", id, n, want)
			}
		}
	})
}
