package payment

import (
	"fmt"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
)

// The payment rules for saga events, as pure functions: no database,
// broker or provider. decide says what an event does to a payment and
// which provider call, if any, it needs; the service makes the call; settle
// says what the provider's answer does. Money only moves through a call,
// so only settle emits events.

// input is a saga event as the rules see it.
type input struct {
	typ     string
	orderID string       // the event's subject
	placed  event.Placed // the data of an order.placed
}

// call is a provider call a decision needs.
type call struct {
	op  string // OpAuthorize, OpCapture, OpVoid or OpRefund
	key string // a void's or refund's idempotency key
}

// request is the provider request of c for payment p.
func (c call) request(p payment) ProviderRequest {
	r := ProviderRequest{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, IdempotencyKey: c.key}
	if c.op == OpAuthorize {
		r.Token = p.token
	}
	return r
}

// decide applies event in to payment p (nil: none recorded yet) and
// returns the payment after it and the provider call to make, if any. An
// error is transient (retry the event) unless marked permanent. The whole
// table, every state by every event (TestDecideEveryStateByEveryEvent):
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
func decide(p *payment, in input) (*payment, *call, error) {
	switch in.typ {
	case event.OrderPlaced:
		d := in.placed
		if p == nil {
			return &payment{orderID: d.OrderID, amount: d.TotalCents, currency: d.Currency, token: d.Token(), state: statePending}, nil, nil
		}
		if p.amount == 0 { // cancelled before it was placed
			q := *p
			q.amount, q.currency, q.token = d.TotalCents, d.Currency, d.Token()
			return &q, nil, nil
		}
		return p, nil, nil
	case event.StockReserved:
		switch {
		case p == nil || p.currency == "":
			// Not yet known, or known only as cancelled: a cancellation can
			// be recorded first, and a late void needs the amount and
			// currency order.placed brings.
			return p, nil, fmt.Errorf("stock.reserved for %s before its order.placed was recorded; will retry", in.orderID)
		case p.cancelled && p.state == statePending:
			// Cancelled while nothing was held. If another instance was
			// authorizing at that moment, it lost the race to record the
			// authorization, and this is its retry: void what it got.
			return p, &call{OpVoid, p.orderID + "/late"}, nil
		case p.cancelled || p.state != statePending:
			return p, nil, nil // late or duplicate
		}
		return p, &call{op: OpAuthorize}, nil
	case event.ShipmentCreated:
		switch {
		case p != nil && p.cancelled && p.state == stateAuthorized:
			// The cancellation's void was refused (the authorization was
			// already captured, by another instance that then lost the
			// race to record the capture) and this is that capture's
			// retry: refund it.
			return p, &call{OpRefund, p.orderID + "/late"}, nil
		case p == nil || p.cancelled || p.state != stateAuthorized:
			return p, nil, nil
		}
		return p, &call{op: OpCapture}, nil
	case event.OrderCancelled:
		return compensate(p, in.orderID)
	}
	return p, nil, apperr.Permanent(fmt.Errorf("payments does not handle %s", in.typ))
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
func compensate(p *payment, orderID string) (*payment, *call, error) {
	if p == nil {
		return &payment{orderID: orderID, state: statePending, cancelled: true}, nil, nil
	}
	if p.cancelled {
		return p, nil, nil
	}
	switch p.state {
	case stateAuthorized:
		return p, &call{OpVoid, p.orderID}, nil
	case statePending, stateAuthorizing:
		return p, &call{OpVoid, p.orderID + "/unconfirmed"}, nil
	case stateCaptured:
		return p, &call{OpRefund, p.orderID}, nil
	}
	q := *p // failed, voided, refunded: nothing held
	q.cancelled = true
	return &q, nil, nil
}

// settle applies the provider's answer res to call c made for p, and
// returns the payment after it and the event to emit, if any.
func settle(p payment, c call, res ProviderResult) (payment, *emission, error) {
	ref := fmt.Sprintf("psp_%d", res.ID)
	switch c.op {
	case OpAuthorize:
		switch res.Outcome {
		case OutcomePending:
			p.state = stateAuthorizing // the provider's webhook will tell
			return p, nil, nil
		case OutcomeApproved:
			p.state, p.ref = stateAuthorized, ref
			return p, &emission{event.PaymentAuthorized, event.Payment{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, ProviderRef: p.ref}}, nil
		}
		p.state = stateFailed
		return p, &emission{event.PaymentFailed, event.PaymentFailure{OrderID: p.orderID, Reason: res.Reason}}, nil
	case OpCapture:
		if res.Outcome != OutcomeDone {
			return p, nil, apperr.Permanent(fmt.Errorf("capture of %s rejected by the provider: %s", p.orderID, res.Reason))
		}
		p.state, p.ref = stateCaptured, ref
		return p, &emission{event.PaymentCaptured, event.Payment{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, ProviderRef: p.ref}}, nil
	}
	// A void or a refund: the payment is cancelled whatever the answer.
	p.cancelled = true
	if res.Outcome != OutcomeDone {
		return p, nil, nil // nothing to undo, or already undone
	}
	state, typ := stateVoided, event.PaymentVoided
	if c.op == OpRefund {
		state, typ = stateRefunded, event.PaymentRefunded
	}
	p.state, p.ref = state, ref
	return p, &emission{typ, event.Payment{OrderID: p.orderID, AmountCents: res.AmountCents, Currency: p.currency, ProviderRef: p.ref}}, nil
}
