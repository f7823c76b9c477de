package domain

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
		rule  func(string) Action
	}{{event.OrderPlaced, OnPlaced}, {event.OrderCancelled, OnCancelled}, {event.ShipmentCreated, OnShipped}}
	table := map[string][3]Action{ // state → the Action of each of rules
		"":             {Reserve, MarkCancelled, Keep},
		StateReserved:  {Keep, ReleaseReserved, CommitReserved},
		StateRejected:  {Keep, Keep, Keep},
		StateCancelled: {Keep, Keep, Keep},
		StateReleased:  {Keep, Keep, Keep},
		StateCommitted: {Keep, ReleaseCommitted, Keep},
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
					if again := r.rule(after); again != Keep {
						t.Fatalf("a duplicate %s in %q = %v; want Keep", r.event, after, again)
					}
				}
			})
		}
	}
}

// stateAfter is the state an Action leaves an order in, as the service
// writes it (Reserve: reserved, or rejected when stock is short).
func stateAfter(state string, a Action) string {
	return map[Action]string{Keep: state, Reserve: StateReserved, MarkCancelled: StateCancelled,
		ReleaseReserved: StateReleased, ReleaseCommitted: StateReleased, CommitReserved: StateCommitted}[a]
}

func TestShortfall(t *testing.T) {
	skus, need := Need([]event.Line{{SKU: "B", Quantity: 2}, {SKU: "A", Quantity: 1}, {SKU: "B", Quantity: 1}})
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
			sku, reason := Shortfall(skus, need, tt.available)
			if sku != tt.sku || reason != tt.reason {
				t.Fatalf("Shortfall(%v) = %q, %q; want %q, %q", tt.available, sku, reason, tt.sku, tt.reason)
			}
		})
	}
}
