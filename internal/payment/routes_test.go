package payment

import (
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

func TestRequest(t *testing.T) {
	p := domain.Payment{OrderID: "o1", Amount: 500, Currency: "EUR", Token: "tok", State: domain.StateAuthorized}
	if r := request(p, domain.Call{Op: OpAuthorize}); r.Token != "tok" || r.AmountCents != 500 || r.IdempotencyKey != "" {
		t.Fatalf("authorize request %+v: want the token and amount, no key", r)
	}
	if r := request(p, domain.Call{Op: OpVoid, Key: "o1/late"}); r.Token != "" || r.IdempotencyKey != "o1/late" || r.Currency != "EUR" {
		t.Fatalf("void request %+v: want the key, no token", r)
	}
}

// TestRoutes: each event payments subscribes to reaches its rule with its
// data decoded; anything else is refused for good.
func TestRoutes(t *testing.T) {
	ev := func(typ string, data any) bus.Event {
		e, err := bus.NewEvent(typ, "test", "o1", data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	p, c, err := routes.decide(nil, ev(event.OrderPlaced, event.Placed{OrderID: "o1", TotalCents: 700, Currency: "EUR", PaymentToken: "tok"}))
	if err != nil || c != nil || p == nil || p.Amount != 700 || p.State != domain.StatePending {
		t.Fatalf("order.placed: payment %+v, call %+v, err %v; want a pending payment of 700", p, c, err)
	}
	if _, c, err := routes.decide(p, ev(event.StockReserved, event.Reserved{OrderID: "o1"})); err != nil || c == nil || c.Op != OpAuthorize {
		t.Fatalf("stock.reserved: call %+v, err %v; want an authorization", c, err)
	}
	if _, _, err := routes.decide(p, ev(event.OrderConfirmed, event.OrderRef{OrderID: "o1"})); !bus.IsPermanent(err) {
		t.Fatalf("order.confirmed: err %v; want a permanent one: payments does not handle it", err)
	}
	if got := routes.types(); len(got) != 4 {
		t.Fatalf("types %v; want the four saga events payments handles", got)
	}
	// The rules name the provider's operations as its API does.
	for ours, theirs := range map[string]string{domain.OpAuthorize: pspapi.OpAuthorize, domain.OpCapture: pspapi.OpCapture,
		domain.OpVoid: pspapi.OpVoid, domain.OpRefund: pspapi.OpRefund, domain.OutcomeApproved: pspapi.OutcomeApproved,
		domain.OutcomePending: pspapi.OutcomePending, domain.OutcomeDeclined: pspapi.OutcomeDeclined, domain.OutcomeDone: pspapi.OutcomeDone} {
		if ours != theirs {
			t.Errorf("the rules say %q where the provider says %q", ours, theirs)
		}
	}
}
