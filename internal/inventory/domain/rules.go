// Package domain is the stock rules, as pure functions of plain values:
// what a saga event does to an order's reservation, and whether the stock
// on hand covers an order. It imports the standard library only
// (TestDomainsImportNothing). The inventory service reads the state and
// the stock, asks these rules, and writes what they say.
package domain

import (
	"fmt"
	"sort"

	"github.com/ordermesh/ordermesh/internal/event"
)

// Reservation states of an order, in the stock_orders table.
const (
	StateReserved  = "reserved"
	StateRejected  = "rejected"
	StateReleased  = "released"
	StateCommitted = "committed"
	StateCancelled = "cancelled" // cancelled before any reservation
)

// Action is what an event does to an order's stock.
type Action int

const (
	Keep             Action = iota // nothing: late or a duplicate
	Reserve                        // reserve every line, or reject the order
	MarkCancelled                  // cancelled before it was placed: never reserve it
	ReleaseReserved                // reserved units back to available
	ReleaseCommitted               // committed units back to available (cancelled after it shipped)
	CommitReserved                 // reserved units to committed (shipped)
)

// The rules say what each saga event does to an order whose reservation
// is in state ("" for an order not seen yet). The whole table (TestRules
// checks every cell):
//
//	state        order.placed   order.cancelled    shipment.created
//	""           Reserve        MarkCancelled      Keep
//	reserved     Keep           ReleaseReserved    CommitReserved
//	rejected     Keep           Keep               Keep
//	cancelled    Keep           Keep               Keep
//	released     Keep           Keep               Keep
//	committed    Keep           ReleaseCommitted   Keep
//
// A late order.placed for an order already cancelled reserves nothing and
// emits nothing: orders has cancelled the order, and payments voids on
// the cancel whatever it may hold. The service takes the order's row
// before it reads the state, so the state is the committed one even with
// two instances on one order.

// OnPlaced is what order.placed does.
func OnPlaced(state string) Action {
	if state != "" {
		return Keep // seen before, or cancelled before it was placed
	}
	return Reserve
}

// OnCancelled is what order.cancelled does.
func OnCancelled(state string) Action {
	switch state {
	case StateReserved:
		return ReleaseReserved
	case StateCommitted:
		return ReleaseCommitted
	case "":
		return MarkCancelled
	}
	return Keep // rejected, released or cancelled: nothing held
}

// OnShipped is what shipment.created does.
func OnShipped(state string) Action {
	if state != StateReserved {
		return Keep
	}
	return CommitReserved
}

// Shortfall returns the first SKU, in skus' order, whose available stock
// does not cover need, and why; "" when every line can be reserved. A SKU
// missing from available is unknown.
func Shortfall(skus []string, need, available map[string]int) (sku, reason string) {
	for _, sku := range skus {
		have, ok := available[sku]
		switch {
		case !ok:
			return sku, "unknown sku"
		case have < need[sku]:
			return sku, fmt.Sprintf("insufficient stock: %d available, %d wanted", have, need[sku])
		}
	}
	return "", ""
}

// Need sums the lines of an order per SKU, sorted (a stable lock order).
func Need(lines []event.Line) ([]string, map[string]int) {
	qty := map[string]int{}
	for _, l := range lines {
		qty[l.SKU] += l.Quantity
	}
	skus := make([]string, 0, len(qty))
	for sku := range qty {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	return skus, qty
}
