package inventory_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

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
	base := os.Getenv(sqldbtest.PostgresEnv)
	if base == "" {
		t.Skip("needs " + sqldbtest.PostgresEnv)
	}
	ctx := context.Background()
	sets := []sqldb.Migrations{outbox.Migrations(), inbox.Migrations(), inventory.Migrations()}
	dsn := sqldbtest.PostgresSchema(t, base)
	db1, db2 := sqldbtest.Open(t, dsn, sets...), sqldbtest.Open(t, dsn)
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
