package order

import (
	"context"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/every"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// apply saves what the rules decided for o (each move's state and
// timeline step) and emits its events, caused by cause (nil for a
// command). A move lost to a concurrent change fails the transaction, to
// be retried against the new state.
func (s *Service) apply(ctx context.Context, tx *sqldb.Tx, o Order, out domain.Outcome, cause *bus.Event) error {
	if len(out.Moves) == 0 {
		return nil
	}
	if cause == nil && o.TraceParent != "" {
		// A command (a customer's cancel, the deadline): its events go on
		// in the order's trace, linked to the request that asked.
		var span trace.Span
		ctx, span = telemetry.Continue(ctx, o.TraceParent, "order "+out.Moves[len(out.Moves)-1].Step, telemetry.AttrOrderID.String(o.ID))
		defer span.End()
	}
	now := s.now()
	version := o.Version
	for _, m := range out.Moves {
		next := m.Order
		next.Version = version
		ok, err := s.transition(ctx, tx, &next, m.Step, now)
		if err != nil || !ok {
			return errOrError(err, o.ID)
		}
		version = next.Version
	}
	for _, e := range out.Emit {
		if err := s.outbox.Emit(ctx, tx, source, e.Type, o.ID, e.Data, cause); err != nil {
			return err
		}
	}
	return nil
}

// transition saves o's new state (see saveTransition) and, once the
// transaction commits, announces the change to waiters on every instance.
func (s *Service) transition(ctx context.Context, tx *sqldb.Tx, o *Order, step string, at time.Time) (bool, error) {
	ok, err := saveTransition(ctx, tx, o, step, at)
	if ok {
		id := o.ID
		tx.OnCommit(func() { s.changed(id) })
		if o.Status == Completed || o.Status == Cancelled {
			tx.OnCommit(countFinished(o, at))
		}
	}
	return ok, err
}

// errOrError turns a lost optimistic update into a transient error, so the
// caller's transaction rolls back and the event is retried.
func errOrError(err error, id string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("order %s changed concurrently; retry", id)
}

// Consumer is the saga consumer's configuration and handler.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	routes := inbox.Routes{
		inbox.On(event.ProductUpdated, func(ctx context.Context, tx *sqldb.Tx, _ bus.Event, p event.Product) error {
			return upsertProduct(ctx, tx, p)
		}),
		inbox.On(event.OrderPlaced, s.checkPlaced),
	}
	// The saga's events, each with its rule.
	routes = append(routes,
		inbox.OnEvent(event.StockRejected, s.advance(domain.OnStockRejected)),
		inbox.OnEvent(event.PaymentAuthorized, s.advance(domain.OnPaymentAuthorized)),
		inbox.OnEvent(event.PaymentFailed, s.advance(domain.OnPaymentFailed)),
		inbox.OnEvent(event.ShipmentCreated, s.advance(domain.OnShipmentCreated)),
		inbox.OnEvent(event.PaymentCaptured, s.advance(domain.OnPaymentCaptured)),
	)
	cfg := bus.ConsumerConfig{Name: ConsumerName, Types: routes.Types()}
	// Every order.placed of an order stored here is this service's own:
	// those are acknowledged after one read, without a transaction. Only
	// one for an unknown order needs checkPlaced's compensation.
	return cfg, bus.Skipping(inbox.BatchHandler(s.db, ConsumerName, routes.Handler(ConsumerName)), s.ownPlacements)
}

// ownPlacements reports which events are order.placed of orders stored
// here.
func (s *Service) ownPlacements(ctx context.Context, evs []bus.Event) ([]bool, error) {
	var ids []any
	for _, ev := range evs {
		if ev.Type == event.OrderPlaced {
			ids = append(ids, ev.Subject)
		}
	}
	out := make([]bool, len(evs))
	if len(ids) == 0 {
		return out, nil
	}
	known, err := existingOrders(ctx, s.db, ids)
	if err != nil {
		return nil, err
	}
	for i, ev := range evs {
		out[i] = ev.Type == event.OrderPlaced && known[ev.Subject]
	}
	return out, nil
}

// advance applies a saga event to its order by rule, inside the
// transaction that records the event.
func (s *Service) advance(rule domain.Rule) inbox.TxHandler {
	return func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
		o, err := loadState(ctx, tx, ev.Subject, true)
		if apperr.KindOf(err) == apperr.NotFound {
			// Every genuine order exists here before anything happens to
			// it elsewhere, so this follows an order.placed this service
			// never accepted, which checkPlaced already cancelled: nothing
			// to do.
			s.log.Warn("event for an order this service never accepted; ignored", bus.LogAttrs(ev)...)
			return nil
		}
		if err != nil {
			return err
		}
		return s.apply(ctx, tx, o, rule(o), &ev)
	}
}

// checkPlaced compensates an order.placed this service never accepted: a
// genuine one is published from the orders outbox after the order's row
// committed, so an unknown order id means a forged or misrouted event.
// Inventory and payments may already have acted on it; order.cancelled
// (reason rejected) makes them release and void whatever they did.
func (s *Service) checkPlaced(ctx context.Context, tx *sqldb.Tx, ev bus.Event, p event.Placed) error {
	_, err := loadState(ctx, tx, ev.Subject, false)
	if apperr.KindOf(err) != apperr.NotFound {
		return err
	}
	if p.OrderID != ev.Subject {
		return bus.Permanent(fmt.Errorf("order.placed for %s carries order_id %s", ev.Subject, p.OrderID))
	}
	s.log.Warn("order.placed for an order this service never accepted; cancelling it so other services compensate",
		append(bus.LogAttrs(ev), "source", ev.Source)...)
	tx.OnCommit(func() { Finished.WithLabelValues(Cancelled, event.ReasonRejected).Inc() })
	return s.outbox.Emit(ctx, tx, source, event.OrderCancelled, p.OrderID,
		event.Cancelled{OrderID: p.OrderID, CustomerID: p.CustomerID, Reason: event.ReasonRejected}, &ev)
}

// RunDeadlines cancels, with reason timeout, every order still pending
// past its deadline, and measures the backlog new orders are admitted by,
// every interval until ctx ends.
func (s *Service) RunDeadlines(ctx context.Context, interval time.Duration) {
	every.Run(ctx, interval, func(ctx context.Context) {
		if err := s.expire(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("order deadlines", "err", err)
		}
		if err := s.admitted.measure(ctx, s.db, s.now(), s.deadline, s.maxWait); err != nil && ctx.Err() == nil {
			s.log.Warn("order backlog", "err", err)
		}
	})
}

func (s *Service) expire(ctx context.Context) error {
	ids, err := overdueOrders(ctx, s.db, s.now(), 500)
	if err != nil {
		return err
	}
	for _, id := range ids {
		err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
			o, err := loadState(ctx, tx, id, true)
			if err != nil {
				return err
			}
			return s.apply(ctx, tx, o, domain.Expire(o), nil)
		})
		if err != nil {
			return fmt.Errorf("expire order %s: %w", id, err)
		}
	}
	return nil

}
