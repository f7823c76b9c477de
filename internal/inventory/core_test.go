package inventory

import (
	"fmt"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

// TestRules checks each event's rule for every state an order's stock can
// be in (never heard of included): the whole table, so no pair is left to
// chance.
func TestRules(t *testing.T) {
	rules := []struct {
		event string
		rule  func(string) action
	}{{event.OrderPlaced, onPlaced}, {event.OrderCancelled, onCancelled}, {event.ShipmentCreated, onShipped}}
	table := map[string][3]action{ // state → the action of each of rules
		"":             {reserve, markCancelled, keep},
		stateReserved:  {keep, releaseReserved, commitReserved},
		stateRejected:  {keep, keep, keep},
		stateCancelled: {keep, keep, keep},
		stateReleased:  {keep, keep, keep},
		stateCommitted: {keep, releaseCommitted, keep},
	}
	for state, want := range table {
		for i, r := range rules {
			t.Run(fmt.Sprintf("%q/%s", state, r.event), func(t *testing.T) {
				got := r.rule(state)
				if got != want[i] {
					t.Fatalf("%s in %q = %v; want %v", r.event, state, got, want[i])
				}
				// A duplicate (the same event again, after its own effect)
				// changes nothing more.
				if after := stateAfter(state, got); after != state {
					if again := r.rule(after); again != keep {
						t.Fatalf("a duplicate %s in %q = %v; want keep", r.event, after, again)
					}
				}
			})
		}
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
