package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

const source = "ordermesh/inventory"

// ConsumerName is the inventory saga consumer, shared by all instances.
const ConsumerName = "inventory-saga"

// Service applies the inventory rules.
type Service struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
	log    *slog.Logger
}

// New returns the inventory service on db, emitting through o.
func New(db *sqldb.DB, o *outbox.Outbox, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{db: db, outbox: o, log: log}
}

// CreateProduct adds a product with its initial stock and emits
// product.updated. Errors: Invalid, Conflict (SKU exists).
func (s *Service) CreateProduct(ctx context.Context, p NewProduct) (Product, error) {
	if err := p.Validate(); err != nil {
		return Product{}, err
	}
	var out Product
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := insertProduct(ctx, tx, p); err != nil {
			return err
		}
		var err error
		out, err = s.productUpdated(ctx, tx, p.SKU)
		return err
	})
	if err == nil {
		s.awaitPublished(ctx, p.SKU)
	}
	return out, err
}

// awaitPublished waits (up to 5s) until the product.updated just committed
// is stored in the broker, so once the caller hears of the change every
// service can learn of it: an order for a product created a moment ago
// waits for the orders catalog instead of failing as unknown.
func (s *Service) awaitPublished(ctx context.Context, sku string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.outbox.WaitPublished(ctx); err != nil {
		s.log.Warn("product.updated not yet in the broker; orders may not know the change for a moment", "sku", sku, "err", err)
	}
}

// Restock adds quantity units to sku. Errors: Invalid, NotFound.
func (s *Service) Restock(ctx context.Context, sku string, quantity int) (Product, error) {
	if err := ValidateRestock(quantity); err != nil {
		return Product{}, err
	}
	var out Product
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := restock(ctx, tx, sku, quantity); err != nil {
			return err
		}
		var err error
		out, err = s.productUpdated(ctx, tx, sku)
		return err
	})
	if err == nil {
		s.awaitPublished(ctx, sku)
	}
	return out, err
}

func (s *Service) productUpdated(ctx context.Context, tx *sqldb.Tx, sku string) (Product, error) {
	p, err := getProduct(ctx, tx, sku)
	if err != nil {
		return Product{}, err
	}
	return p, s.outbox.Emit(ctx, tx, source, event.ProductUpdated, p.SKU, p, nil)
}

// Product returns one product. Errors: NotFound.
func (s *Service) Product(ctx context.Context, sku string) (Product, error) {
	return getProduct(ctx, s.db, sku)
}

// Consumer is the saga consumer's configuration and handler.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	routes := inbox.Routes{
		inbox.On(event.OrderPlaced, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Placed) error {
			return s.handle(ctx, tx, ev, d.OrderID, d.Items, domain.OnPlaced)
		}),
		inbox.On(event.OrderCancelled, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Cancelled) error {
			return s.handle(ctx, tx, ev, d.OrderID, nil, domain.OnCancelled)
		}),
		inbox.On(event.ShipmentCreated, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Shipment) error {
			return s.handle(ctx, tx, ev, d.OrderID, nil, domain.OnShipped)
		}),
	}
	cfg := bus.ConsumerConfig{Name: ConsumerName, Types: routes.Types()}
	return cfg, inbox.BatchHandler(s.db, ConsumerName, routes.Handler(ConsumerName), inbox.LockFirst(lockStock))
}

// afterRead is called once handle has read an order's state: tests race
// another instance against it there.
var afterRead = func(orderID string) {}

// handle applies one saga event about orderID (with its lines, for an
// order.placed) inside the transaction that records it: it reads the
// order's reservation, asks the event's rule, and writes the outcome.
func (s *Service) handle(ctx context.Context, tx *sqldb.Tx, ev bus.Event, orderID string, lines []event.Line, rule func(state string) domain.Action) error {
	state, err := lockOrder(ctx, tx, orderID)
	if err != nil {
		return err
	}
	afterRead(orderID)
	act := rule(state)
	switch act {
	case domain.Keep:
		return nil
	case domain.Reserve:
		return s.reserve(ctx, tx, ev, orderID, lines)
	case domain.MarkCancelled:
		return setOrderState(ctx, tx, orderID, domain.StateCancelled)
	}
	if err := moveReserved(ctx, tx, orderID, moves[act]); err != nil {
		return fmt.Errorf("move the stock of %s: %w", orderID, err)
	}
	state, typ := domain.StateReleased, event.StockReleased
	if act == domain.CommitReserved {
		state, typ = domain.StateCommitted, event.StockCommitted
	}
	if err := setOrderState(ctx, tx, orderID, state); err != nil {
		return err
	}
	return s.outbox.Emit(ctx, tx, source, typ, orderID, event.OrderRef{OrderID: orderID}, &ev)
}

// reserve reserves every line of the order or none, and says which.
func (s *Service) reserve(ctx context.Context, tx *sqldb.Tx, ev bus.Event, orderID string, lines []event.Line) error {
	sku, reason, err := tryReserve(ctx, tx, orderID, lines)
	if err != nil {
		return fmt.Errorf("reserve stock for %s: %w", orderID, err)
	}
	if sku != "" {
		if err := setOrderState(ctx, tx, orderID, domain.StateRejected); err != nil {
			return err
		}
		return s.outbox.Emit(ctx, tx, source, event.StockRejected, orderID, event.Rejected{OrderID: orderID, SKU: sku, Reason: reason}, &ev)
	}
	if err := setOrderState(ctx, tx, orderID, domain.StateReserved); err != nil {
		return err
	}
	return s.outbox.Emit(ctx, tx, source, event.StockReserved, orderID, event.Reserved{OrderID: orderID, Items: lines}, &ev)
}
