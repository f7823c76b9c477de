package domain

import "github.com/ordermesh/ordermesh/internal/event"

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

// A Rule is what one saga event does to an order. The orders service
// routes each event type it consumes to its rule; the whole table, every
// status by every input, is TestEveryStateByEveryInput.
type Rule func(o Order) Outcome

// OnStockRejected cancels a pending order: out of stock.
func OnStockRejected(o Order) Outcome {
	return cancelIf(o, o.Status == Pending, event.ReasonOutOfStock)
}

// OnPaymentFailed cancels a pending order: the payment was declined.
func OnPaymentFailed(o Order) Outcome {
	return cancelIf(o, o.Status == Pending, event.ReasonPaymentDeclined)
}

// OnPaymentAuthorized confirms a pending order (stock is reserved, since
// payments authorizes only then). An order cancelled meanwhile stays
// cancelled: payments voids on order.cancelled.
func OnPaymentAuthorized(o Order) Outcome {
	if o.Status != Pending {
		return Outcome{}
	}
	o.Status = Confirmed
	return Outcome{Moves: []Move{{o, event.OrderConfirmed}}, Emit: []Emission{{event.OrderConfirmed,
		event.Confirmed{OrderID: o.ID, CustomerID: o.CustomerID, Items: o.Items, ShippingAddress: o.ShippingAddress}}}}
}

// OnShipmentCreated ships a confirmed order, and completes it if its
// payment was captured already.
func OnShipmentCreated(o Order) Outcome {
	if o.Status != Confirmed {
		return Outcome{}
	}
	o.Status, o.HasShipped = Shipped, true
	return completeIfDone(o, Outcome{Moves: []Move{{o, event.ShipmentCreated}}})
}

// OnPaymentCaptured records the capture of a confirmed or shipped order,
// and completes it if it has shipped.
func OnPaymentCaptured(o Order) Outcome {
	if o.Captured || (o.Status != Confirmed && o.Status != Shipped) {
		return Outcome{}
	}
	o.Captured = true
	// A step of its own, like every move: each version of the order is
	// one step of its timeline and one event of its live stream, whose
	// ids then have no gaps.
	return completeIfDone(o, Outcome{Moves: []Move{{o, event.PaymentCaptured}}})
}

// CancelByCustomer decides a customer's cancellation: allowed until the
// order ships, and nothing to do for an order already cancelled. The
// refusal is a NotCancellable.
func CancelByCustomer(o Order) (Outcome, error) {
	if !o.Cancellable() {
		return Outcome{}, NotCancellable{o.ID, o.Status}
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
	if o.Status != Shipped || !o.Captured {
		return out
	}
	o.Status = Completed
	out.Moves = append(out.Moves, Move{o, event.OrderCompleted})
	out.Emit = append(out.Emit, Emission{event.OrderCompleted, event.OrderRef{OrderID: o.ID, CustomerID: o.CustomerID}})
	return out
}
