package domain

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

// an order in a given state, for the rules' table tests.
func an(status string, opts ...func(*Order)) Order {
	o := Order{ID: "o1", CustomerID: "c1", Status: status, Version: 3, Currency: "EUR", TotalCents: 500,
		Items: []event.Line{{SKU: "A", Quantity: 1, UnitPriceCents: 500}}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func captured(o *Order) { o.Captured = true }
func shipped(o *Order)  { o.HasShipped = true }

// moved is the order o after a move to status, with the given changes.
func moved(o Order, status string, opts ...func(*Order)) Order {
	o.Status = status
	for _, f := range opts {
		f(&o)
	}
	return o
}

func cancelledFor(reason string) func(*Order) { return func(o *Order) { o.CancelReason = reason } }

// rules are the saga events the orders service consumes, each with its
// rule, as the service routes them.
var rules = map[string]Rule{
	event.StockRejected: OnStockRejected, event.PaymentFailed: OnPaymentFailed, event.PaymentAuthorized: OnPaymentAuthorized,
	event.ShipmentCreated: OnShipmentCreated, event.PaymentCaptured: OnPaymentCaptured,
}

func TestRules(t *testing.T) {
	confirmedEvent := Emission{event.OrderConfirmed, event.Confirmed{OrderID: "o1", CustomerID: "c1",
		Items: an(Pending).Items}}
	completedEvent := Emission{event.OrderCompleted, event.OrderRef{OrderID: "o1", CustomerID: "c1"}}
	cancelledEvent := func(reason string) Emission {
		return Emission{event.OrderCancelled, event.Cancelled{OrderID: "o1", CustomerID: "c1", Reason: reason}}
	}
	tests := []struct {
		name  string
		order Order
		typ   string
		want  Outcome
	}{
		{"AuthorizedConfirms", an(Pending), event.PaymentAuthorized, Outcome{
			Moves: []Move{{moved(an(Pending), Confirmed), event.OrderConfirmed}}, Emit: []Emission{confirmedEvent}}},
		{"LateAuthorizationAfterCancel", an(Cancelled), event.PaymentAuthorized, Outcome{}},
		{"DuplicateAuthorization", an(Confirmed), event.PaymentAuthorized, Outcome{}},
		{"StockRejectedCancels", an(Pending), event.StockRejected, Outcome{
			Moves: []Move{{moved(an(Pending), Cancelled, cancelledFor(event.ReasonOutOfStock)), event.OrderCancelled}},
			Emit:  []Emission{cancelledEvent(event.ReasonOutOfStock)}}},
		{"StockRejectedAfterConfirmIsLate", an(Confirmed), event.StockRejected, Outcome{}},
		{"PaymentFailedCancels", an(Pending), event.PaymentFailed, Outcome{
			Moves: []Move{{moved(an(Pending), Cancelled, cancelledFor(event.ReasonPaymentDeclined)), event.OrderCancelled}},
			Emit:  []Emission{cancelledEvent(event.ReasonPaymentDeclined)}}},
		{"PaymentFailedAfterCancelIsLate", an(Cancelled), event.PaymentFailed, Outcome{}},
		{"ShipmentBeforeCaptureShips", an(Confirmed), event.ShipmentCreated, Outcome{
			Moves: []Move{{moved(an(Confirmed), Shipped, shipped), event.ShipmentCreated}}}},
		{"ShipmentAfterCaptureCompletes", an(Confirmed, captured), event.ShipmentCreated, Outcome{
			Moves: []Move{
				{moved(an(Confirmed, captured), Shipped, shipped), event.ShipmentCreated},
				{moved(an(Confirmed, captured), Completed, shipped), event.OrderCompleted}},
			Emit: []Emission{completedEvent}}},
		{"ShipmentOfAPendingOrderWaits", an(Pending), event.ShipmentCreated, Outcome{}},
		{"ShipmentAfterCancelIsLate", an(Cancelled), event.ShipmentCreated, Outcome{}},
		{"CaptureBeforeShipmentIsRecorded", an(Confirmed), event.PaymentCaptured, Outcome{
			Moves: []Move{{moved(an(Confirmed), Confirmed, captured), event.PaymentCaptured}}}},
		{"CaptureAfterShipmentCompletes", an(Shipped, shipped), event.PaymentCaptured, Outcome{
			Moves: []Move{
				{moved(an(Shipped, shipped), Shipped, captured), event.PaymentCaptured},
				{moved(an(Shipped, shipped), Completed, captured), event.OrderCompleted}},
			Emit: []Emission{completedEvent}}},
		{"DuplicateCapture", an(Confirmed, captured), event.PaymentCaptured, Outcome{}},
		{"CaptureAfterCancelChangesNothing", an(Cancelled), event.PaymentCaptured, Outcome{}},
		{"CaptureAfterCompletionChangesNothing", an(Completed, shipped, captured), event.PaymentCaptured, Outcome{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rules[tt.typ](tt.order)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("%s on a %s order\n got  %+v\n want %+v", tt.typ, tt.order.Status, got, tt.want)
			}
		})
	}
}

func TestCancelByCustomer(t *testing.T) {
	for _, status := range []string{Pending, Confirmed} {
		got, err := CancelByCustomer(an(status))
		want := Outcome{Moves: []Move{{moved(an(status), Cancelled, cancelledFor(event.ReasonCustomerRequest)), event.OrderCancelled}},
			Emit: []Emission{{event.OrderCancelled, event.Cancelled{OrderID: "o1", CustomerID: "c1", Reason: event.ReasonCustomerRequest}}}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("CancelByCustomer(%s) = %+v, %v; want %+v", status, got, err, want)
		}
	}
	if got, err := CancelByCustomer(an(Cancelled)); err != nil || len(got.Moves)+len(got.Emit) != 0 {
		t.Fatalf("CancelByCustomer(cancelled) = %+v, %v; want nothing to do", got, err)
	}
	for _, status := range []string{Shipped, Completed} {
		if _, err := CancelByCustomer(an(status)); !errors.As(err, new(NotCancellable)) {
			t.Fatalf("CancelByCustomer(%s) error = %v, want a NotCancellable", status, err)
		}
	}
}

func TestExpire(t *testing.T) {
	got := Expire(an(Pending))
	if len(got.Moves) != 1 || got.Moves[0].Order.Status != Cancelled || got.Moves[0].Order.CancelReason != event.ReasonTimeout ||
		len(got.Emit) != 1 || got.Emit[0].Type != event.OrderCancelled {
		t.Fatalf("Expire(pending) = %+v, want a cancellation with reason timeout", got)
	}
	for _, status := range []string{Confirmed, Shipped, Completed, Cancelled} {
		if got := Expire(an(status)); len(got.Moves)+len(got.Emit) != 0 {
			t.Fatalf("Expire(%s) = %+v, want nothing: only pending orders time out", status, got)
		}
	}
}

// TestEveryStateByEveryInput is the rules' whole table: for each state an
// order can be in and each input (every saga event orders consumes, a
// customer's cancel, the deadline), the status it ends in ("" for no
// change at all: late or a duplicate; "conflict" for a refusal). Applying
// the same input again changes nothing more.
func TestEveryStateByEveryInput(t *testing.T) {
	inputs := []string{event.StockRejected, event.PaymentFailed, event.PaymentAuthorized, event.ShipmentCreated, event.PaymentCaptured, "cancel", "deadline"}
	states := map[string]Order{
		"pending":            an(Pending),
		"confirmed":          an(Confirmed),
		"confirmed+captured": an(Confirmed, captured),
		"shipped":            an(Shipped, shipped),
		"completed":          an(Completed, shipped, captured),
		"cancelled":          an(Cancelled),
	}
	table := map[string][7]string{ // state → the status each input leaves, in inputs' order
		"pending":            {Cancelled, Cancelled, Confirmed, "", "", Cancelled, Cancelled},
		"confirmed":          {"", "", "", Shipped, Confirmed, Cancelled, ""},
		"confirmed+captured": {"", "", "", Completed, "", Cancelled, ""},
		"shipped":            {"", "", "", "", Completed, "conflict", ""},
		"completed":          {"", "", "", "", "", "conflict", ""},
		"cancelled":          {"", "", "", "", "", "", ""},
	}
	apply := func(o Order, input string) (Outcome, error) {
		switch input {
		case "cancel":
			return CancelByCustomer(o)
		case "deadline":
			return Expire(o), nil
		}
		return rules[input](o), nil
	}
	for name, o := range states {
		for i, input := range inputs {
			t.Run(name+"/"+input, func(t *testing.T) {
				out, err := apply(o, input)
				got := ""
				switch {
				case errors.As(err, new(NotCancellable)):
					got = "conflict"
				case err != nil:
					t.Fatalf("error %v", err)
				case len(out.Moves) > 0:
					got = out.Moves[len(out.Moves)-1].Order.Status
				}
				if got != table[name][i] {
					t.Fatalf("%s in %s ends %q, want %q", input, name, got, table[name][i])
				}
				if len(out.Moves) == 0 {
					return
				}
				for _, m := range out.Moves {
					if m.Step == "" {
						t.Errorf("a move without a timeline step: %+v", m)
					}
				}
				if again, err := apply(out.Moves[len(out.Moves)-1].Order, input); err == nil && len(again.Moves) > 0 {
					t.Errorf("the same %s again moves the order again: %+v", input, again.Moves)
				}
			})
		}
	}
}
