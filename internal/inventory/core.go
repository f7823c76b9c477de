package inventory

import (
	"fmt"
)

// The stock rules, as pure functions: no database or broker. decide says
// what a saga event does to an order's reservation; shortfall says whether
// the stock on hand covers an order. The service reads the state and the
// stock, asks them, and writes what they say.

// action is what an event does to an order's stock.
type action int

const (
	keep             action = iota // nothing: late or a duplicate
	reserve                        // reserve every line, or reject the order
	markCancelled                  // cancelled before it was placed: never reserve it
	releaseReserved                // reserved units back to available
	releaseCommitted               // committed units back to available (cancelled after it shipped)
	commitReserved                 // reserved units to committed (shipped)
)

// The rules say what each saga event does to an order whose reservation
// is in state ("" for an order not seen yet). The whole table (TestRules
// checks every cell):
//
//	state        order.placed   order.cancelled    shipment.created
//	""           reserve        markCancelled      keep
//	reserved     keep           releaseReserved    commitReserved
//	rejected     keep           keep               keep
//	cancelled    keep           keep               keep
//	released     keep           keep               keep
//	committed    keep           releaseCommitted   keep
//
// A late order.placed for an order already cancelled reserves nothing and
// emits nothing: orders has cancelled the order, and payments voids on
// the cancel whatever it may hold. The service takes the order's row
// before it reads the state, so the state is the committed one even with
// two instances on one order.

// onPlaced is what order.placed does.
func onPlaced(state string) action {
	if state != "" {
		return keep // seen before, or cancelled before it was placed
	}
	return reserve
}

// onCancelled is what order.cancelled does.
func onCancelled(state string) action {
	switch state {
	case stateReserved:
		return releaseReserved
	case stateCommitted:
		return releaseCommitted
	case "":
		return markCancelled
	}
	return keep // rejected, released or cancelled: nothing held
}

// onShipped is what shipment.created does.
func onShipped(state string) action {
	if state != stateReserved {
		return keep
	}
	return commitReserved
}

// shortfall returns the first SKU, in skus' order, whose available stock
// does not cover need, and why; "" when every line can be reserved. A SKU
// missing from available is unknown.
func shortfall(skus []string, need, available map[string]int) (sku, reason string) {
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
