// Package shipping creates a shipment for every confirmed order that has
// not been cancelled (order.confirmed → shipment.created), once.
package shipping

import (
	"context"

	"github.com/google/uuid"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/shipping/domain"
)

const (
	source = "ordermesh/shipping"
	// ConsumerName is the shipping saga consumer.
	ConsumerName = "shipping-saga"
)

// Service applies the shipping rules.
type Service struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

// New returns the shipping service.
func New(db *sqldb.DB, o *outbox.Outbox) *Service { return &Service{db: db, outbox: o} }

// Consumer is the saga consumer's configuration and handler.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	routes := inbox.Routes{
		inbox.On(event.OrderConfirmed, s.ship),
		inbox.OnEvent(event.OrderCancelled, s.cancel),
	}
	cfg := bus.ConsumerConfig{Name: ConsumerName, Types: routes.Types()}
	return cfg, inbox.BatchHandler(s.db, ConsumerName, routes.Handler(ConsumerName))
}

// ship creates the shipment of a confirmed order, unless it has one or was
// cancelled first.
func (s *Service) ship(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Confirmed) error {
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	sh := domain.Shipment(d.OrderID, id.String())
	created, err := insertShipment(ctx, tx, sh)
	if err != nil || !created {
		return err // !created: already shipped, or cancelled first
	}
	return s.outbox.Emit(ctx, tx, source, event.ShipmentCreated, d.OrderID, sh, &ev)
}

// cancel marks a cancelled order, so a late order.confirmed ships nothing.
func (s *Service) cancel(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
	return markCancelled(ctx, tx, ev.Subject)
}
