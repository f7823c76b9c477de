package order

import (
	"fmt"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
)

// The order rules, as pure functions: no database, broker or clock. The
// service loads an order, asks them what an event or a command does to
// it, then saves the moves and emits the events they return, in one
// transaction.

// Move is one saved change of an order: the order after it, and the
// timeline step it records (every move records one, so each version of an
// order is a step of its timeline).
type Move struct {
	Order Order
	Step  string
}

// Emission is an event a decision emits, about the order it decided on.
type Emission struct {
	Type string
	Data any
}

// Outcome is what the rules decide for one input: the moves to save, in
// order, then the events to emit. An empty Outcome means the input
// changes nothing: it is late (the order moved on) or a duplicate.
type Outcome struct {
	Moves []Move
	Emit  []Emission
}

// On decides what a saga event of type typ does to order o. An event the
// orders service does not handle is an error.
func On(o Order, typ string) (Outcome, error) {
	switch typ {
	case event.StockRejected:
		return cancelIf(o, o.Status == Pending, event.ReasonOutOfStock), nil
	case event.PaymentFailed:
		return cancelIf(o, o.Status == Pending, event.ReasonPaymentDeclined), nil
	case event.PaymentAuthorized:
		if o.Status != Pending {
			return Outcome{}, nil // cancelled meanwhile: payments voids on order.cancelled
		}
		o.Status = Confirmed
		return Outcome{Moves: []Move{{o, event.OrderConfirmed}}, Emit: []Emission{{event.OrderConfirmed,
			event.Confirmed{OrderID: o.ID, CustomerID: o.CustomerID, Items: o.Items, ShippingAddress: o.ShippingAddress}}}}, nil
	case event.ShipmentCreated:
		if o.Status != Confirmed {
			return Outcome{}, nil
		}
		o.Status, o.shipped = Shipped, true
		return completeIfDone(o, Outcome{Moves: []Move{{o, event.ShipmentCreated}}}), nil
	case event.PaymentCaptured:
		if o.captured || (o.Status != Confirmed && o.Status != Shipped) {
			return Outcome{}, nil
		}
		o.captured = true
		// A step of its own, like every move: each version of the order
		// is one step of its timeline and one event of its live stream,
		// whose ids then have no gaps.
		return completeIfDone(o, Outcome{Moves: []Move{{o, event.PaymentCaptured}}}), nil
	}
	return Outcome{}, fmt.Errorf("orders does not handle %s", typ)
}

// CancelByCustomer decides a customer's cancellation: allowed until the
// order ships, and nothing to do for an order already cancelled. Errors:
// Conflict.
func CancelByCustomer(o Order) (Outcome, error) {
	if !o.Cancellable() {
		return Outcome{}, apperr.New(apperr.Conflict, "", "order %s is %s; it can no longer be cancelled", o.ID, o.Status)
	}
	return cancelIf(o, o.Status != Cancelled, event.ReasonCustomerRequest), nil
}

// Expire decides what its deadline passing does to o: a pending order is
// cancelled with reason timeout; any other is left alone.
func Expire(o Order) Outcome { return cancelIf(o, o.Status == Pending, event.ReasonTimeout) }

// cancelIf cancels o with reason when cond holds: order.cancelled tells the
// other services to compensate.
func cancelIf(o Order, cond bool, reason string) Outcome {
	if !cond {
		return Outcome{}
	}
	o.Status, o.CancelReason = Cancelled, reason
	return Outcome{Moves: []Move{{o, event.OrderCancelled}}, Emit: []Emission{{event.OrderCancelled,
		event.Cancelled{OrderID: o.ID, CustomerID: o.CustomerID, Reason: reason}}}}
}

// completeIfDone adds the completion to out when o, as out leaves it, is
// shipped and its payment captured.
func completeIfDone(o Order, out Outcome) Outcome {
	if o.Status != Shipped || !o.captured {
		return out
	}
	o.Status = Completed
	out.Moves = append(out.Moves, Move{o, event.OrderCompleted})
	out.Emit = append(out.Emit, Emission{event.OrderCompleted, event.OrderRef{OrderID: o.ID, CustomerID: o.CustomerID}})
	return out
}
