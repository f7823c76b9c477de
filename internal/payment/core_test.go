package payment

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// pay is a payment of order o1 in state, for the rules' table tests.
func pay(state string, cancelled bool) *payment {
	return &payment{orderID: "o1", amount: 500, currency: "EUR", token: "tok", state: state, cancelled: cancelled, ref: "psp_1", version: 2}
}

func with(p *payment, f func(*payment)) *payment {
	q := *p
	f(&q)
	return &q
}

func TestDecide(t *testing.T) {
	placed := event.Placed{OrderID: "o1", TotalCents: 500, Currency: "EUR", PaymentToken: "tok"}
	tests := []struct {
		name     string
		p        *payment
		typ      string
		want     *payment
		wantCall *call
	}{
		{"PlacedRecordsThePayment", nil, event.OrderPlaced,
			&payment{orderID: "o1", amount: 500, currency: "EUR", token: "tok", state: statePending}, nil},
		{"PlacedAfterCancelFillsTheAmount", &payment{orderID: "o1", state: statePending, cancelled: true}, event.OrderPlaced,
			&payment{orderID: "o1", amount: 500, currency: "EUR", token: "tok", state: statePending, cancelled: true}, nil},
		{"DuplicatePlaced", pay(statePending, false), event.OrderPlaced, pay(statePending, false), nil},
		{"ReservedAuthorizes", pay(statePending, false), event.StockReserved, pay(statePending, false), &call{op: OpAuthorize}},
		{"DuplicateReserved", pay(stateAuthorized, false), event.StockReserved, pay(stateAuthorized, false), nil},
		{"LateReservationAfterCancelVoids", pay(statePending, true), event.StockReserved, pay(statePending, true), &call{OpVoid, "o1/late"}},
		{"ReservationAfterCompensationIsLate", pay(stateVoided, true), event.StockReserved, pay(stateVoided, true), nil},
		{"ShipmentCaptures", pay(stateAuthorized, false), event.ShipmentCreated, pay(stateAuthorized, false), &call{op: OpCapture}},
		{"CaptureAfterVoid", pay(stateVoided, true), event.ShipmentCreated, pay(stateVoided, true), nil},
		{"CaptureOfADeclinedPayment", pay(stateFailed, false), event.ShipmentCreated, pay(stateFailed, false), nil},
		{"LateCaptureAfterARefusedVoidRefunds", pay(stateAuthorized, true), event.ShipmentCreated, pay(stateAuthorized, true), &call{OpRefund, "o1/late"}},
		{"DuplicateShipment", pay(stateCaptured, false), event.ShipmentCreated, pay(stateCaptured, false), nil},
		{"CancelBeforePlacedIsRecorded", nil, event.OrderCancelled, &payment{orderID: "o1", state: statePending, cancelled: true}, nil},
		{"CancelVoidsAnAuthorization", pay(stateAuthorized, false), event.OrderCancelled, pay(stateAuthorized, false), &call{OpVoid, "o1"}},
		{"CancelWhilePendingVoidsWhatMayBeHeld", pay(statePending, false), event.OrderCancelled, pay(statePending, false), &call{OpVoid, "o1/unconfirmed"}},
		{"CancelWhileAuthorizingVoidsWhatMayBeHeld", pay(stateAuthorizing, false), event.OrderCancelled, pay(stateAuthorizing, false), &call{OpVoid, "o1/unconfirmed"}},
		{"CancelRefundsACapture", pay(stateCaptured, false), event.OrderCancelled, pay(stateCaptured, false), &call{OpRefund, "o1"}},
		{"CancelOfADeclinedPaymentHoldsNothing", pay(stateFailed, false), event.OrderCancelled, pay(stateFailed, true), nil},
		{"DuplicateCancel", pay(stateVoided, true), event.OrderCancelled, pay(stateVoided, true), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, c, err := decide(tt.p, input{typ: tt.typ, orderID: "o1", placed: placed})
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
	for _, p := range []*payment{nil, {orderID: "o1", state: statePending, cancelled: true}} {
		if _, c, err := decide(p, input{typ: event.StockReserved, orderID: "o1"}); err == nil || bus.IsPermanent(err) || c != nil {
			t.Fatalf("decide(%+v, stock.reserved) = call %+v, err %v; want a transient error and no call", p, c, err)
		}
	}
	if _, _, err := decide(nil, input{typ: event.OrderConfirmed, orderID: "o1"}); !bus.IsPermanent(err) {
		t.Fatalf("decide(order.confirmed) error = %v, want a permanent one: payments does not handle it", err)
	}
}

func TestSettle(t *testing.T) {
	paid := func(typ string, amount int64) *emission {
		return &emission{typ, event.Payment{OrderID: "o1", AmountCents: amount, Currency: "EUR", ProviderRef: "psp_7"}}
	}
	tests := []struct {
		name string
		p    *payment
		c    call
		res  ProviderResult
		want *payment
		emit *emission
	}{
		{"Approved", pay(statePending, false), call{op: OpAuthorize}, ProviderResult{ID: 7, Outcome: OutcomeApproved},
			with(pay(stateAuthorized, false), func(p *payment) { p.ref = "psp_7" }), paid(event.PaymentAuthorized, 500)},
		{"Declined", pay(statePending, false), call{op: OpAuthorize}, ProviderResult{ID: 7, Outcome: OutcomeDeclined, Reason: "card_declined"},
			pay(stateFailed, false), &emission{event.PaymentFailed, event.PaymentFailure{OrderID: "o1", Reason: "card_declined"}}},
		{"PendingWaitsForTheWebhook", pay(statePending, false), call{op: OpAuthorize}, ProviderResult{ID: 7, Outcome: OutcomePending},
			pay(stateAuthorizing, false), nil},
		{"Captured", pay(stateAuthorized, false), call{op: OpCapture}, ProviderResult{ID: 7, Outcome: OutcomeDone},
			with(pay(stateCaptured, false), func(p *payment) { p.ref = "psp_7" }), paid(event.PaymentCaptured, 500)},
		{"Voided", pay(stateAuthorized, false), call{OpVoid, "o1"}, ProviderResult{ID: 7, Outcome: OutcomeDone, AmountCents: 500},
			with(pay(stateVoided, true), func(p *payment) { p.ref = "psp_7" }), paid(event.PaymentVoided, 500)},
		{"NothingToVoid", pay(statePending, false), call{OpVoid, "o1/unconfirmed"}, ProviderResult{ID: 7, Outcome: "nothing_to_void"},
			pay(statePending, true), nil},
		{"Refunded", pay(stateCaptured, false), call{OpRefund, "o1"}, ProviderResult{ID: 7, Outcome: OutcomeDone, AmountCents: 500},
			with(pay(stateRefunded, true), func(p *payment) { p.ref = "psp_7" }), paid(event.PaymentRefunded, 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e, err := settle(*tt.p, tt.c, tt.res)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tt.want) || !reflect.DeepEqual(e, tt.emit) {
				t.Fatalf("settle(%s, %+v)\n got  %+v, emit %+v\n want %+v, emit %+v", tt.c.op, tt.res, got, e, *tt.want, tt.emit)
			}
		})
	}
	if _, e, err := settle(*pay(stateAuthorized, false), call{op: OpCapture}, ProviderResult{Outcome: "rejected"}); !bus.IsPermanent(err) || e != nil {
		t.Fatalf("a rejected capture: emit %+v, err %v; want a permanent error and nothing emitted", e, err)
	}
}

func TestCallRequest(t *testing.T) {
	p := *pay(stateAuthorized, false)
	if r := (call{op: OpAuthorize}).request(p); r.Token != "tok" || r.AmountCents != 500 || r.IdempotencyKey != "" {
		t.Fatalf("authorize request %+v: want the token and amount, no key", r)
	}
	if r := (call{OpVoid, "o1/late"}).request(p); r.Token != "" || r.IdempotencyKey != "o1/late" || r.Currency != "EUR" {
		t.Fatalf("void request %+v: want the key, no token", r)
	}
}

// TestDecideEveryStateByEveryEvent is the payment rules' whole table: for
// every state a payment can be in (none yet, cancelled or not) and every
// event payments consumes, the provider call decide asks for ("" for
// none, "retry" for a transient error: the event comes back once what it
// needs is recorded).
func TestDecideEveryStateByEveryEvent(t *testing.T) {
	events := []string{event.OrderPlaced, event.StockReserved, event.ShipmentCreated, event.OrderCancelled}
	states := map[string]*payment{
		"none":                  nil,
		"pending":               pay(statePending, false),
		"pending+cancelled":     pay(statePending, true),
		"authorizing":           pay(stateAuthorizing, false),
		"authorizing+cancelled": pay(stateAuthorizing, true),
		"authorized":            pay(stateAuthorized, false),
		"authorized+cancelled":  pay(stateAuthorized, true),
		"captured":              pay(stateCaptured, false),
		"failed":                pay(stateFailed, false),
		"voided":                pay(stateVoided, true),
		"refunded":              pay(stateRefunded, true),
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
	placed := event.Placed{OrderID: "o1", TotalCents: 500, Currency: "EUR", PaymentToken: "tok"}
	for name, p := range states {
		for i, typ := range events {
			t.Run(name+"/"+typ, func(t *testing.T) {
				_, c, err := decide(p, input{typ: typ, orderID: "o1", placed: placed})
				got := ""
				switch {
				case err != nil && !bus.IsPermanent(err):
					got = "retry"
				case err != nil:
					t.Fatalf("a permanent error: %v", err)
				case c != nil:
					got = strings.TrimSpace(c.op + " " + c.key)
				}
				if got != table[name][i] {
					t.Fatalf("%s on a %s payment asks for %q, want %q", typ, name, got, table[name][i])
				}
			})
		}
	}
}
