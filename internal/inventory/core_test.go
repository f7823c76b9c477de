package inventory

import (
	"fmt"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// TestDecide checks decide for every state an order's stock can be in
// (never heard of included) and every event inventory consumes: the
// whole table, so no pair is left to chance.
func TestDecide(t *testing.T) {
	events := []string{event.OrderPlaced, event.OrderCancelled, event.ShipmentCreated}
	table := map[string][3]action{ // state → the action of each of events
		"":             {reserve, markCancelled, keep},
		stateReserved:  {keep, releaseReserved, commitReserved},
		stateRejected:  {keep, keep, keep},
		stateCancelled: {keep, keep, keep},
		stateReleased:  {keep, keep, keep},
		stateCommitted: {keep, releaseCommitted, keep},
	}
	for state, want := range table {
		for i, typ := range events {
			t.Run(fmt.Sprintf("%q/%s", state, typ), func(t *testing.T) {
				got, err := decide(state, typ)
				if err != nil || got != want[i] {
					t.Fatalf("decide(%q, %s) = %v, %v; want %v", state, typ, got, err, want[i])
				}
				// A duplicate (the same event again, after its own effect)
				// changes nothing more.
				if after := stateAfter(state, got); after != state {
					if again, err := decide(after, typ); err != nil || again != keep {
						t.Fatalf("a duplicate %s in %q = %v, %v; want keep", typ, after, again, err)
					}
				}
			})
		}
	}
	if _, err := decide("", event.PaymentAuthorized); !bus.IsPermanent(err) {
		t.Fatalf("decide(payment.authorized) error = %v, want a permanent one", err)
	}
}

// stateAfter is the state an action leaves an order in, as the service
// writes it (reserve: reserved, or rejected when stock is short).
func stateAfter(state string, a action) string {
	return map[action]string{keep: state, reserve: stateReserved, markCancelled: stateCancelled,
		releaseReserved: stateReleased, releaseCommitted: stateReleased, commitReserved: stateCommitted}[a]
}

func TestShortfall(t *testing.T) {
	skus, need := need([]event.Line{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}})
	tests := []struct {
		name      string
		available map[string]int
		sku       string
		reason    string
	}{
		{"Covered", map[string]int{"A": 1, "B": 3}, "", ""},
		{"ShortOnTheSummedLines", map[string]int{"A": 1, "B": 2}, "B", "insufficient stock: 2 available, 3 wanted"},
		{"UnknownSKU", map[string]int{"B": 5}, "A", "unknown sku"},
		{"FirstShortInSKUOrder", map[string]int{"A": 0, "B": 0}, "A", "insufficient stock: 0 available, 1 wanted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sku, reason := shortfall(skus, need, tt.available)
			if sku != tt.sku || reason != tt.reason {
				t.Fatalf("shortfall(%v) = %q, %q; want %q, %q", tt.available, sku, reason, tt.sku, tt.reason)
			}
		})
	}
}
