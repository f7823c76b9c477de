package domain

import (
	"fmt"

	"github.com/ordermesh/ordermesh/internal/event"
)

// A Rule is what one saga event does to payment p of order orderID (nil:
// none recorded yet), with the event's data: the payment after it and the
// provider call to make, if any. An error is transient: the event is
// retried. The whole table, every state by every event
// (TestEveryStateByEveryEvent):
//
//	payment               order.placed  stock.reserved  shipment.created  order.cancelled
//	none                  record        retry           -                 record cancelled
//	pending               -             authorize       -                 void ORDER/unconfirmed
//	pending, cancelled    fill amount   void ORDER/late -                 -
//	authorizing           -             -               -                 void ORDER/unconfirmed
//	authorized            -             -               capture           void ORDER
//	authorized, cancelled -             -               refund ORDER/late -
//	captured              -             -               -                 refund ORDER
//	failed, voided, refunded, authorizing+cancelled: nothing
type Rule[T any] func(p *Payment, orderID string, data T) (*Payment, *Call, error)

// OnPlaced records what to charge.
func OnPlaced(p *Payment, _ string, d event.Placed) (*Payment, *Call, error) {
	if p == nil {
		return &Payment{OrderID: d.OrderID, Amount: d.TotalCents, Currency: d.Currency, Token: d.Token(), State: StatePending}, nil, nil
	}
	if p.Amount == 0 { // cancelled before it was placed
		q := *p
		q.Amount, q.Currency, q.Token = d.TotalCents, d.Currency, d.Token()
		return &q, nil, nil
	}
	return p, nil, nil
}

// OnReserved authorizes: stock is held, so the money may be.
func OnReserved(p *Payment, orderID string, _ event.Reserved) (*Payment, *Call, error) {
	switch {
	case p == nil || p.Currency == "":
		// Not yet known, or known only as cancelled: a cancellation can
		// be recorded first, and a late void needs the amount and
		// currency order.placed brings.
		return p, nil, fmt.Errorf("stock.reserved for %s before its order.placed was recorded; will retry", orderID)
	case p.Cancelled && p.State == StatePending:
		// Cancelled while nothing was held. If another instance was
		// authorizing at that moment, it lost the race to record the
		// authorization, and this is its retry: void what it got.
		return p, &Call{OpVoid, p.OrderID + "/late"}, nil
	case p.Cancelled || p.State != StatePending:
		return p, nil, nil // late or duplicate
	}
	return p, &Call{Op: OpAuthorize}, nil
}

// OnShipped captures what was authorized.
func OnShipped(p *Payment, _ string, _ event.Shipment) (*Payment, *Call, error) {
	switch {
	case p != nil && p.Cancelled && p.State == StateAuthorized:
		// The cancellation's void was refused (the authorization was
		// already captured, by another instance that then lost the
		// race to record the capture) and this is that capture's
		// retry: refund it.
		return p, &Call{OpRefund, p.OrderID + "/late"}, nil
	case p == nil || p.Cancelled || p.State != StateAuthorized:
		return p, nil, nil
	}
	return p, &Call{Op: OpCapture}, nil
}

// OnCancelled compensates: see compensate.
func OnCancelled(p *Payment, orderID string, _ event.Cancelled) (*Payment, *Call, error) {
	return compensate(p, orderID)
}

// compensate decides how to undo what was charged for a cancelled order: a
// void for an authorization (also attempted while still pending, in case an
// attempt whose answer was lost did authorize), a refund for a capture.
//
// A void while nothing is known to be held has an idempotency key of its
// own: if it finds nothing and the payment turns out authorized after all
// (another instance recorded it first, and this event is retried), the
// void that follows must be decided anew, not answered with the first
// void's "nothing to void".
func compensate(p *Payment, orderID string) (*Payment, *Call, error) {
	if p == nil {
		return &Payment{OrderID: orderID, State: StatePending, Cancelled: true}, nil, nil
	}
	if p.Cancelled {
		return p, nil, nil
	}
	switch p.State {
	case StateAuthorized:
		return p, &Call{OpVoid, p.OrderID}, nil
	case StatePending, StateAuthorizing:
		return p, &Call{OpVoid, p.OrderID + "/unconfirmed"}, nil
	case StateCaptured:
		return p, &Call{OpRefund, p.OrderID}, nil
	}
	q := *p // failed, voided, refunded: nothing held
	q.Cancelled = true
	return &q, nil, nil
}

// Settle applies the provider's answer res to call c made for p, and
// returns the payment after it and the event to emit, if any.
func Settle(p Payment, c Call, res Answer) (Payment, *Emission, error) {
	ref := fmt.Sprintf("psp_%d", res.ID)
	switch c.Op {
	case OpAuthorize:
		switch res.Outcome {
		case OutcomePending:
			p.State = StateAuthorizing // the provider's webhook will tell
			return p, nil, nil
		case OutcomeApproved:
			p.State, p.Ref = StateAuthorized, ref
			return p, &Emission{event.PaymentAuthorized, event.Payment{OrderID: p.OrderID, AmountCents: p.Amount, Currency: p.Currency, ProviderRef: p.Ref}}, nil
		}
		p.State = StateFailed
		return p, &Emission{event.PaymentFailed, event.PaymentFailure{OrderID: p.OrderID, Reason: res.Reason}}, nil
	case OpCapture:
		if res.Outcome != OutcomeDone {
			return p, nil, fmt.Errorf("%w: capture of %s: %s", ErrCaptureRejected, p.OrderID, res.Reason)
		}
		p.State, p.Ref = StateCaptured, ref
		return p, &Emission{event.PaymentCaptured, event.Payment{OrderID: p.OrderID, AmountCents: p.Amount, Currency: p.Currency, ProviderRef: p.Ref}}, nil
	}
	// A void or a refund: the payment is cancelled whatever the answer.
	p.Cancelled = true
	if res.Outcome != OutcomeDone {
		return p, nil, nil // nothing to undo, or already undone
	}
	state, typ := StateVoided, event.PaymentVoided
	if c.Op == OpRefund {
		state, typ = StateRefunded, event.PaymentRefunded
	}
	p.State, p.Ref = state, ref
	return p, &Emission{typ, event.Payment{OrderID: p.OrderID, AmountCents: res.AmountCents, Currency: p.Currency, ProviderRef: p.Ref}}, nil
}
