package inventory

import (
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name, state, typ string
		want             action
	}{
		{"PlacedReserves", "", event.OrderPlaced, reserve},
		{"DuplicatePlaced", stateReserved, event.OrderPlaced, keep},
		{"PlacedAfterItsCancel", stateCancelled, event.OrderPlaced, keep},
		{"PlacedAfterARejection", stateRejected, event.OrderPlaced, keep},
		{"CancelReleasesAReservation", stateReserved, event.OrderCancelled, releaseReserved},
		{"CancelAfterShippingReleasesCommitted", stateCommitted, event.OrderCancelled, releaseCommitted},
		{"CancelBeforePlacedMarksTheOrder", "", event.OrderCancelled, markCancelled},
		{"CancelOfARejectedOrderHoldsNothing", stateRejected, event.OrderCancelled, keep},
		{"DuplicateCancel", stateReleased, event.OrderCancelled, keep},
		{"ShipmentCommits", stateReserved, event.ShipmentCreated, commitReserved},
		{"DuplicateShipment", stateCommitted, event.ShipmentCreated, keep},
		{"ShipmentAfterRelease", stateReleased, event.ShipmentCreated, keep},
		{"ShipmentOfAnUnknownOrder", "", event.ShipmentCreated, keep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decide(tt.state, tt.typ)
			if err != nil || got != tt.want {
				t.Fatalf("decide(%q, %s) = %v, %v; want %v", tt.state, tt.typ, got, err, tt.want)
			}
		})
	}
	if _, err := decide("", event.PaymentAuthorized); !bus.IsPermanent(err) {
		t.Fatalf("decide(payment.authorized) error = %v, want a permanent one", err)
	}
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
