package payment

import (
	"fmt"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// routes are the saga events payments consumes, each with its rule and
// its data's type.
var routes = rules{
	on(event.OrderPlaced, domain.OnPlaced),
	on(event.StockReserved, domain.OnReserved),
	on(event.ShipmentCreated, domain.OnShipped),
	on(event.OrderCancelled, domain.OnCancelled),
}

// route is the rule of one event type.
type route struct {
	typ    string
	decide func(p *domain.Payment, ev bus.Event) (*domain.Payment, *domain.Call, error)
}

// on routes events of type typ to rule, with their data decoded into a T
// (data that does not decode is a permanent error).
func on[T any](typ string, rule domain.Rule[T]) route {
	return route{typ, func(p *domain.Payment, ev bus.Event) (*domain.Payment, *domain.Call, error) {
		var data T
		if err := ev.DecodeData(&data); err != nil {
			return nil, nil, err
		}
		return rule(p, ev.Subject, data)
	}}
}

// rules are a consumer's routes.
type rules []route

// types are the event types the rules handle: the consumer's subscription.
func (rs rules) types() []string {
	types := make([]string, len(rs))
	for i, r := range rs {
		types[i] = r.typ
	}
	return types
}

// decide applies ev's rule to p. An event of a type without a rule (the
// consumer never subscribes to it, so it was forged or misrouted) is a
// permanent error.
func (rs rules) decide(p *domain.Payment, ev bus.Event) (*domain.Payment, *domain.Call, error) {
	for _, r := range rs {
		if r.typ == ev.Type {
			return r.decide(p, ev)
		}
	}
	return p, nil, apperr.Permanent(fmt.Errorf("payments does not handle %s", ev.Type))
}

// request is the provider request of call c for payment p: an
// authorization carries the token, a void or a refund its idempotency key.
func request(p domain.Payment, c domain.Call) ProviderRequest {
	r := ProviderRequest{OrderID: p.OrderID, AmountCents: p.Amount, Currency: p.Currency, IdempotencyKey: c.Key}
	if c.Op == OpAuthorize {
		r.Token = p.Token
	}
	return r
}
