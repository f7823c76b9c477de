package domain

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

// pay is a payment of order o1 in state, for the rules' table tests.
func pay(state string, cancelled bool) *Payment {
	return &Payment{OrderID: "o1", Amount: 500, Currency: "EUR", Token: "tok", State: state, Cancelled: cancelled, Ref: "psp_1", Version: 2}
}

func with(p *Payment, f func(*Payment)) *Payment {
	q := *p
	f(&q)
	return &q
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		p        *Payment
		typ      string
		want     *Payment
		wantCall *Call
	}{
		{"PlacedRecordsThePayment", nil, event.OrderPlaced,
			&Payment{OrderID: "o1", Amount: 500, Currency: "EUR", Token: "tok", State: StatePending}, nil},
		{"PlacedAfterCancelFillsTheAmount", &Payment{OrderID: "o1", State: StatePending, Cancelled: true}, event.OrderPlaced,
			&Payment{OrderID: "o1", Amount: 500, Currency: "EUR", Token: "tok", State: StatePending, Cancelled: true}, nil},
		{"DuplicatePlaced", pay(StatePending, false), event.OrderPlaced, pay(StatePending, false), nil},
		{"ReservedAuthorizes", pay(StatePending, false), event.StockReserved, pay(StatePending, false), &Call{Op: OpAuthorize}},
		{"DuplicateReserved", pay(StateAuthorized, false), event.StockReserved, pay(StateAuthorized, false), nil},
		{"LateReservationAfterCancelVoids", pay(StatePending, true), event.StockReserved, pay(StatePending, true), &Call{OpVoid, "o1/late"}},
		{"ReservationAfterCompensationIsLate", pay(StateVoided, true), event.StockReserved, pay(StateVoided, true), nil},
		{"ShipmentCaptures", pay(StateAuthorized, false), event.ShipmentCreated, pay(StateAuthorized, false), &Call{Op: OpCapture}},
		{"CaptureAfterVoid", pay(StateVoided, true), event.ShipmentCreated, pay(StateVoided, true), nil},
		{"CaptureOfADeclinedPayment", pay(StateFailed, false), event.ShipmentCreated, pay(StateFailed, false), nil},
		{"LateCaptureAfterARefusedVoidRefunds", pay(StateAuthorized, true), event.ShipmentCreated, pay(StateAuthorized, true), &Call{OpRefund, "o1/late"}},
		{"DuplicateShipment", pay(StateCaptured, false), event.ShipmentCreated, pay(StateCaptured, false), nil},
		{"CancelBeforePlacedIsRecorded", nil, event.OrderCancelled, &Payment{OrderID: "o1", State: StatePending, Cancelled: true}, nil},
		{"CancelVoidsAnAuthorization", pay(StateAuthorized, false), event.OrderCancelled, pay(StateAuthorized, false), &Call{OpVoid, "o1"}},
		{"CancelWhilePendingVoidsWhatMayBeHeld", pay(StatePending, false), event.OrderCancelled, pay(StatePending, false), &Call{OpVoid, "o1/unconfirmed"}},
		{"CancelWhileAuthorizingVoidsWhatMayBeHeld", pay(StateAuthorizing, false), event.OrderCancelled, pay(StateAuthorizing, false), &Call{OpVoid, "o1/unconfirmed"}},
		{"CancelRefundsACapture", pay(StateCaptured, false), event.OrderCancelled, pay(StateCaptured, false), &Call{OpRefund, "o1"}},
		{"CancelOfADeclinedPaymentHoldsNothing", pay(StateFailed, false), event.OrderCancelled, pay(StateFailed, true), nil},
		{"DuplicateCancel", pay(StateVoided, true), event.OrderCancelled, pay(StateVoided, true), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, c, err := decide(tt.p, tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(c, tt.wantCall) {
				t.Fatalf("decide(%+v, %s)\n got  %+v, call %+v\n want %+v, call %+v", tt.p, tt.typ, got, c, tt.want, tt.wantCall)
			}
		})
	}
}

func TestDecideRetriesAReservationBeforeThePlacement(t *testing.T) {
	for _, p := range []*Payment{nil, {OrderID: "o1", State: StatePending, Cancelled: true}} {
		if _, c, err := decide(p, event.StockReserved); err == nil || errors.Is(err, ErrCaptureRejected) || c != nil {
			t.Fatalf("decide(%+v, stock.reserved) = call %+v, err %v; want a transient error and no call", p, c, err)
		}
	}
}

func TestSettle(t *testing.T) {
	paid := func(typ string, amount int64) *Emission {
		return &Emission{typ, event.Payment{OrderID: "o1", AmountCents: amount, Currency: "EUR", ProviderRef: "psp_7"}}
	}
	tests := []struct {
		name string
		p    *Payment
		c    Call
		res  Answer
		want *Payment
		emit *Emission
	}{
		{"Approved", pay(StatePending, false), Call{Op: OpAuthorize}, Answer{ID: 7, Outcome: OutcomeApproved},
			with(pay(StateAuthorized, false), func(p *Payment) { p.Ref = "psp_7" }), paid(event.PaymentAuthorized, 500)},
		{"Declined", pay(StatePending, false), Call{Op: OpAuthorize}, Answer{ID: 7, Outcome: OutcomeDeclined, Reason: "card_declined"},
			pay(StateFailed, false), &Emission{event.PaymentFailed, event.PaymentFailure{OrderID: "o1", Reason: "card_declined"}}},
		{"PendingWaitsForTheWebhook", pay(StatePending, false), Call{Op: OpAuthorize}, Answer{ID: 7, Outcome: OutcomePending},
			pay(StateAuthorizing, false), nil},
		{"Captured", pay(StateAuthorized, false), Call{Op: OpCapture}, Answer{ID: 7, Outcome: OutcomeDone},
			with(pay(StateCaptured, false), func(p *Payment) { p.Ref = "psp_7" }), paid(event.PaymentCaptured, 500)},
		{"Voided", pay(StateAuthorized, false), Call{OpVoid, "o1"}, Answer{ID: 7, Outcome: OutcomeDone, AmountCents: 500},
			with(pay(StateVoided, true), func(p *Payment) { p.Ref = "psp_7" }), paid(event.PaymentVoided, 500)},
		{"NothingToVoid", pay(StatePending, false), Call{OpVoid, "o1/unconfirmed"}, Answer{ID: 7, Outcome: "nothing_to_void"},
			pay(StatePending, true), nil},
		{"Refunded", pay(StateCaptured, false), Call{OpRefund, "o1"}, Answer{ID: 7, Outcome: OutcomeDone, AmountCents: 500},
			with(pay(StateRefunded, true), func(p *Payment) { p.Ref = "psp_7" }), paid(event.PaymentRefunded, 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e, err := Settle(*tt.p, tt.c, tt.res)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tt.want) || !reflect.DeepEqual(e, tt.emit) {
				t.Fatalf("Settle(%s, %+v)\n got  %+v, emit %+v\n want %+v, emit %+v", tt.c.Op, tt.res, got, e, *tt.want, tt.emit)
			}
		})
	}
	if _, e, err := Settle(*pay(StateAuthorized, false), Call{Op: OpCapture}, Answer{Outcome: "rejected"}); !errors.Is(err, ErrCaptureRejected) || e != nil {
		t.Fatalf("a rejected capture: emit %+v, err %v; want ErrCaptureRejected and nothing emitted", e, err)
	}
}

// TestEveryStateByEveryEvent is the payment rules' whole table: for
// every state a payment can be in (none yet, cancelled or not) and every
// event payments consumes, the provider call decide asks for ("" for
// none, "retry" for a transient error: the event comes back once what it
// needs is recorded).
func TestEveryStateByEveryEvent(t *testing.T) {
	events := []string{event.OrderPlaced, event.StockReserved, event.ShipmentCreated, event.OrderCancelled}
	states := map[string]*Payment{
		"none":                  nil,
		"pending":               pay(StatePending, false),
		"pending+cancelled":     pay(StatePending, true),
		"authorizing":           pay(StateAuthorizing, false),
		"authorizing+cancelled": pay(StateAuthorizing, true),
		"authorized":            pay(StateAuthorized, false),
		"authorized+cancelled":  pay(StateAuthorized, true),
		"captured":              pay(StateCaptured, false),
		"failed":                pay(StateFailed, false),
		"voided":                pay(StateVoided, true),
		"refunded":              pay(StateRefunded, true),
	}
	table := map[string][4]string{ // state → the call of each of events
		"none":                  {"", "retry", "", ""},
		"pending":               {"", "authorize", "", "void o1/unconfirmed"},
		"pending+cancelled":     {"", "void o1/late", "", ""},
		"authorizing":           {"", "", "", "void o1/unconfirmed"},
		"authorizing+cancelled": {"", "", "", ""},
		"authorized":            {"", "", "capture", "void o1"},
		"authorized+cancelled":  {"", "", "refund o1/late", ""},
		"captured":              {"", "", "", "refund o1"},
		"failed":                {"", "", "", ""},
		"voided":                {"", "", "", ""},
		"refunded":              {"", "", "", ""},
	}
	for name, p := range states {
		for i, typ := range events {
			t.Run(name+"/"+typ, func(t *testing.T) {
				_, c, err := decide(p, typ)
				got := ""
				switch {
				case err != nil && !errors.Is(err, ErrCaptureRejected):
					got = "retry"
				case err != nil:
					t.Fatalf("a permanent error: %v", err)
				case c != nil:
					got = strings.TrimSpace(c.Op + " " + c.Key)
				}
				if got != table[name][i] {
					t.Fatalf("%s on a %s payment asks for %q, want %q", typ, name, got, table[name][i])
				}
			})
		}
	}
}

// decide applies the rule of event typ to p, as payments routes it.
func decide(p *Payment, typ string) (*Payment, *Call, error) {
	switch typ {
	case event.OrderPlaced:
		return OnPlaced(p, "o1", event.Placed{OrderID: "o1", TotalCents: 500, Currency: "EUR", PaymentToken: "tok"})
	case event.StockReserved:
		return OnReserved(p, "o1", event.Reserved{})
	case event.ShipmentCreated:
		return OnShipped(p, "o1", event.Shipment{})
	}
	return OnCancelled(p, "o1", event.Cancelled{})
}
