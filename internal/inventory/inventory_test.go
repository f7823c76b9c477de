package inventory_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

var address = event.Address{Name: "Ada", Line1: "1 Road", City: "Oslo", PostalCode: "0150", Country: "NO"}

func placed(t *testing.T, id, sku string) bus.Event {
	return bustest.NewEvent(t, event.OrderPlaced, id, event.Placed{OrderID: id, CustomerID: "c",
		Items: []event.Line{{SKU: sku, Quantity: 1, UnitPriceCents: 100}}, TotalCents: 100, Currency: "EUR",
		PaymentToken: "tok_ok", ShippingAddress: address})
}

// TestConcurrentBatchesDoNotDeadlock: two instances on one PostgreSQL
// database handle batches that touch the same SKUs in opposite orders
// (instance 1 sees an order for B, then one for A; instance 2 A, then B).
// Every event must succeed on its first delivery, and stock must balance.
func TestConcurrentBatchesDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	_, db1, db2 := twoInstancesDatabase(t)
	one := inventory.New(db1, outbox.New(db1), nil)
	two := inventory.New(db2, outbox.New(db2), nil)
	for _, sku := range []string{"A", "B"} { // no relay runs here: insert directly rather than wait for a publish
		if _, err := db1.Exec(ctx, `INSERT INTO products (sku, name, price_cents, currency, received, available, reserved, committed)
			VALUES (?, ?, 100, 'EUR', 1000, 1000, 0, 0)`, sku, sku); err != nil {
			t.Fatal(err)
		}
	}
	_, h1 := one.Consumer()
	_, h2 := two.Consumer()
	const rounds = 40
	for i := range rounds {
		var wg sync.WaitGroup
		var errs1, errs2 []error
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs1 = h1(ctx, []bus.Event{placed(t, fmt.Sprintf("x%d-1", i), "B"), placed(t, fmt.Sprintf("x%d-2", i), "A")})
		}()
		go func() {
			defer wg.Done()
			errs2 = h2(ctx, []bus.Event{placed(t, fmt.Sprintf("y%d-1", i), "A"), placed(t, fmt.Sprintf("y%d-2", i), "B")})
		}()
		wg.Wait()
		if errs1 != nil || errs2 != nil {
			t.Fatalf("round %d: a delivery was spent: instance 1 %v, instance 2 %v", i, errs1, errs2)
		}
	}
	ledger, err := one.Ledger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ledger {
		if l.Reserved != 2*rounds || l.Available != 1000-2*rounds || l.Received != l.Available+l.Reserved+l.Committed {
			t.Errorf("SKU %s after %d rounds: %+v", l.SKU, rounds, l)
		}
	}
}

// TestInstancesRacingOnOneOrder: two instances on one PostgreSQL database
// handle two events of one order at once, in the interleaving that breaks
// a decision made on a state read without a lock: the first instance has
// read the order's state when the second handles its event, and goes on
// only once the second has finished or waits for it. Whatever the pair,
// the stock ends as the rules say for both events in some order: nothing
// reserved or committed for a cancelled order, one reservation for a
// placed one.
func TestInstancesRacingOnOneOrder(t *testing.T) {
	ctx := context.Background()
	dsn, db1, db2 := twoInstancesDatabase(t)
	watch := sqldbtest.Open(t, dsn) // the test's own connection, free while both instances hold theirs
	_, h1 := inventory.New(db1, outbox.New(db1), nil).Consumer()
	_, h2 := inventory.New(db2, outbox.New(db2), nil).Consumer()
	cancelled := func(id, _ string) bus.Event {
		return bustest.NewEvent(t, event.OrderCancelled, id, event.Cancelled{OrderID: id, CustomerID: "c", Reason: event.ReasonTimeout})
	}
	shipped := func(id, _ string) bus.Event {
		return bustest.NewEvent(t, event.ShipmentCreated, id, event.Shipment{OrderID: id, ShipmentID: "s-" + id, Carrier: "c", Tracking: "t"})
	}
	placed := func(id, sku string) bus.Event { return placed(t, id, sku) }
	type mk func(id, sku string) bus.Event
	for i, tc := range []struct {
		name          string
		before        []mk
		first, second mk
		// the stock of the order's SKU (10 received) at the end
		available, reserved, committed int
	}{
		{"PlacedRacesCancel", nil, placed, cancelled, 10, 0, 0},
		{"CancelRacesPlaced", nil, cancelled, placed, 10, 0, 0},
		{"PlacedRacesItsCopy", nil, placed, placed, 9, 1, 0},
		{"ShipmentRacesCancel", []mk{placed}, shipped, cancelled, 10, 0, 0},
		{"CancelRacesShipment", []mk{placed}, cancelled, shipped, 10, 0, 0},
		{"CancelRacesCancel", []mk{placed}, cancelled, cancelled, 10, 0, 0},
		{"ShipmentRacesShipment", []mk{placed}, shipped, shipped, 9, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, sku := fmt.Sprintf("race-%d", i), fmt.Sprintf("RACE%d", i)
			if _, err := db1.Exec(ctx, `INSERT INTO products (sku, name, price_cents, currency, received, available, reserved, committed)
				VALUES (?, ?, 100, 'EUR', 10, 10, 0, 0)`, sku, sku); err != nil {
				t.Fatal(err)
			}
			for _, ev := range tc.before {
				if errs := h1(ctx, []bus.Event{ev(id, sku)}); errs != nil {
					t.Fatal(errs)
				}
			}
			second := make(chan []error, 1)
			var started atomic.Bool
			defer inventory.SetAfterRead(func(orderID string) {
				if orderID != id || !started.CompareAndSwap(false, true) {
					return // the second instance's own read
				}
				go func() { second <- h2(ctx, []bus.Event{tc.second(id, sku)}) }()
				for !waitsForALock(t, watch) {
					select {
					case errs := <-second:
						second <- errs
						return
					case <-time.After(5 * time.Millisecond): // poll pg_stat_activity
					}
				}
			})()
			for _, errs := range [][]error{h1(ctx, []bus.Event{tc.first(id, sku)}), <-second} {
				for _, err := range errs {
					if err != nil {
						t.Fatalf("an instance failed: %v", err)
					}
				}
			}
			var available, reserved, committed int
			if err := db1.QueryRow(ctx, "SELECT available, reserved, committed FROM products WHERE sku = ?", sku).Scan(&available, &reserved, &committed); err != nil {
				t.Fatal(err)
			}
			if available != tc.available || reserved != tc.reserved || committed != tc.committed {
				t.Fatalf("stock of %s: available %d, reserved %d, committed %d; want %d, %d, %d",
					sku, available, reserved, committed, tc.available, tc.reserved, tc.committed)
			}
		})
	}
}

// waitsForALock says whether a transaction on db's database waits for a
// lock on the inventory's order or product rows: the second instance,
// stopped by the first.
func waitsForALock(t *testing.T, db *sqldb.DB) bool {
	var n int
	if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
		AND wait_event_type = 'Lock' AND state = 'active' AND (query LIKE '%stock_orders%' OR query LIKE '%products%')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// twoInstancesDatabase is a PostgreSQL schema with inventory's tables
// and two handles on it, one per instance (skipped without PostgreSQL).
func twoInstancesDatabase(t *testing.T) (dsn string, db1, db2 *sqldb.DB) {
	base := os.Getenv(sqldbtest.PostgresEnv)
	if base == "" {
		t.Skip("needs " + sqldbtest.PostgresEnv)
	}
	sets := []sqldb.Migrations{outbox.Migrations(), inbox.Migrations(), inventory.Migrations()}
	dsn = sqldbtest.PostgresSchema(t, base)
	return dsn, sqldbtest.Open(t, dsn, sets...), sqldbtest.Open(t, dsn)
}
