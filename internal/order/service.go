package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order/domain"
	"github.com/ordermesh/ordermesh/internal/platform/idempotency"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

const source = "ordermesh/orders"

// ConsumerName is the orders saga consumer.
const ConsumerName = "orders-saga"

// Config configures the orders service.
type Config struct {
	DB     *sqldb.DB
	Outbox *outbox.Outbox
	Logger *slog.Logger
	// Deadline is how long an order may stay pending before it is
	// cancelled with reason timeout. Zero means 30s.
	Deadline time.Duration
	// MaxWait is how long accepted orders may wait before new ones are
	// refused (see admission.go). Zero means Deadline/6.
	MaxWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Changed, if set, is told the id of every order whose committed state
	// changed; the app broadcasts it through the broker to every instance.
	Changed func(id string)
	// CatalogCaughtUp, if set, reports whether the catalog read model has
	// applied every product.updated the broker holds. Placing an order
	// for a SKU the catalog does not know waits (up to CatalogWait) until
	// it has, so a product created with 201 can be ordered at once.
	CatalogCaughtUp func(ctx context.Context, sku string) (bool, error)
	// CatalogWait bounds that wait. Zero means 3s.
	CatalogWait time.Duration
	// TokenPublicKey is the payments service's key: a payment token
	// leaves orders only sealed to it, in order.placed, and is never
	// stored here.
	TokenPublicKey sealed.PublicKey
	// TokenPublicKeyText is TokenPublicKey as its flag gives it, or
	// TokenPublicKeyFile a file that holds it.
	TokenPublicKeyText, TokenPublicKeyFile string
}

// Service applies the order rules.
type Service struct {
	db       *sqldb.DB
	outbox   *outbox.Outbox
	log      *slog.Logger
	deadline time.Duration
	maxWait  time.Duration
	admitted admission
	now      func() time.Time
	changes  *changes
	changed  func(id string)
	caughtUp func(ctx context.Context, sku string) (bool, error)
	catWait  time.Duration
	tokenKey sealed.PublicKey
}

// New returns the orders service.
func New(cfg Config) *Service {
	if cfg.Deadline <= 0 {
		cfg.Deadline = 30 * time.Second
	}
	if cfg.MaxWait <= 0 || cfg.MaxWait >= cfg.Deadline {
		cfg.MaxWait = cfg.Deadline / 6
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func(string) {}
	}
	if cfg.CatalogWait <= 0 {
		cfg.CatalogWait = 3 * time.Second
	}
	return &Service{db: cfg.DB, outbox: cfg.Outbox, log: cfg.Logger, deadline: cfg.Deadline, maxWait: cfg.MaxWait, now: cfg.Now,
		changes: newChanges(), changed: cfg.Changed, caughtUp: cfg.CatalogCaughtUp, catWait: cfg.CatalogWait,
		tokenKey: cfg.TokenPublicKey}
}

// Placed is the answer to a place request: the response to send, and
// whether it is a replay of an earlier request with the same key.
type Placed struct {
	Status   int
	Body     []byte
	OrderID  string
	Replayed bool
}

// Place accepts an order under caller's idempotency key. Keys are scoped to
// the caller (the authenticated subject): another caller's key of the same
// spelling is a different key. The same caller, key and body returns the
// first answer (Replayed); with a different body it is Unprocessable;
// while the first request still runs it is a Conflict.
// The key's answer is stored in the order's own transaction. Errors:
// Invalid, Unprocessable (unknown SKU, mixed currencies, key reuse),
// Conflict.
func (s *Service) Place(ctx context.Context, caller, key string, raw []byte, req PlaceRequest) (Placed, error) {
	if err := req.Validate(); err != nil {
		return Placed{}, err
	}
	hash := idempotency.Hash(raw)
	placed, err := s.place(ctx, caller, key, hash, req)
	var unknown unknownSKUError
	if errors.As(err, &unknown) && s.waitForCatalog(ctx, unknown.sku) {
		placed, err = s.place(ctx, caller, key, hash, req)
	}
	return placed, err
}

// waitForCatalog waits until the catalog read model has applied every
// product.updated of sku in the broker, or CatalogWait passes. It reports
// whether the catalog caught up.
func (s *Service) waitForCatalog(ctx context.Context, sku string) bool {
	if s.caughtUp == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.catWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := s.caughtUp(ctx, sku)
		if ok {
			return true
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("catalog progress", "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// place is one attempt of Place, in one transaction.
func (s *Service) place(ctx context.Context, caller, key, hash string, req PlaceRequest) (Placed, error) {
	// The key is claimed in the same transaction as the order: if anything
	// fails, the claim goes with it and a corrected request can use the key.
	var out Placed
	var replay *Placed
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		answer, err := idempotency.Claim(ctx, tx, caller, key, hash, s.now())
		if err != nil || answer != nil {
			replay = replayOf(answer)
			return err
		}
		if err := s.admitted.admit(s.maxWait); err != nil {
			return err // the key's claim goes with the transaction
		}
		o, err := s.newOrder(ctx, tx, req)
		if err != nil {
			return err
		}
		if err := insertOrder(ctx, tx, o, o.CreatedAt.Add(s.deadline)); err != nil {
			return err
		}
		tx.OnCommit(func() { s.changed(o.ID) })
		method, err := s.tokenKey.Seal(o.ID, req.PaymentToken)
		if err != nil {
			return err
		}
		placed := event.Placed{OrderID: o.ID, CustomerID: o.CustomerID, Items: o.Items, TotalCents: o.TotalCents,
			Currency: o.Currency, PaymentMethod: method, ShippingAddress: o.ShippingAddress}
		if err := s.outbox.Emit(ctx, tx, source, event.OrderPlaced, o.ID, placed, nil); err != nil {
			return err
		}
		body, _ := json.Marshal(o)
		out = Placed{Status: 202, Body: body, OrderID: o.ID}
		return idempotency.Complete(ctx, tx, caller, key, out.Status, body)
	})
	switch {
	case err != nil:
		return Placed{}, err
	case replay != nil:
		return *replay, nil
	}
	return out, nil
}

// replayOf is the Placed that replays a stored answer (nil: none).
func replayOf(a *idempotency.Answer) *Placed {
	if a == nil {
		return nil
	}
	var id struct {
		ID string `json:"id"`
	}
	json.Unmarshal(a.Body, &id)
	return &Placed{Status: a.Status, Body: a.Body, OrderID: id.ID, Replayed: true}
}

// newOrder prices the request from the catalog read model.
func (s *Service) newOrder(ctx context.Context, tx *sqldb.Tx, req PlaceRequest) (Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, err
	}
	o := Order{ID: id.String(), CustomerID: req.CustomerID, Status: Pending, Version: 1,
		ShippingAddress: req.ShippingAddress, CreatedAt: s.now().UTC(), TraceParent: telemetry.TraceParent(ctx),
		Timeline: []Step{}}
	for i, it := range req.Items {
		field := fmt.Sprintf("items[%d].sku", i)
		cents, currency, err := price(ctx, tx, it.SKU, field)
		if err != nil {
			return Order{}, err
		}
		if o.Currency == "" {
			o.Currency = currency
		} else if currency != o.Currency {
			return Order{}, apperr.New(apperr.Unprocessable, field, "%s is priced in %s, the order in %s; place separate orders", it.SKU, currency, o.Currency)
		}
		o.Items = append(o.Items, event.Line{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: cents})
		o.TotalCents += cents * int64(it.Quantity)
	}
	o.Timeline = append(o.Timeline, Step{Type: event.OrderPlaced, At: o.CreatedAt})
	return o, nil
}

// Get returns an order. Errors: NotFound.
func (s *Service) Get(ctx context.Context, id string) (Order, error) {
	return loadOrder(ctx, s.db, id, false)
}

// Notify tells waiting requests that order id changed. The app calls it
// for every change signal on the broker (see Config.Changed), so waiters
// on every instance hear of changes made anywhere.
func (s *Service) Notify(id string) { s.changes.notify(id) }

// recheck bounds how long a waiter trusts the broker's wake-up: a missed
// signal costs at most this much latency.
const recheck = 5 * time.Second

// WaitVersion waits until order id's version exceeds after, or ctx ends.
// It returns the order and whether it changed. Errors: NotFound.
func (s *Service) WaitVersion(ctx context.Context, id string, after int) (Order, bool, error) {
	for {
		woken, stop := s.changes.watch(id) // before reading: no lost wake-up
		o, err := s.Get(ctx, id)
		if err != nil || o.Version > after {
			stop()
			return o, err == nil, err
		}
		select {
		case <-woken:
		case <-time.After(recheck):
		case <-ctx.Done():
			stop()
			return o, false, nil
		}
		stop()
	}
}

// ChangesAfter returns order id's steps after version after, each with the
// order as it was then. Errors: NotFound.
func (s *Service) ChangesAfter(ctx context.Context, id string, after int) ([]Change, error) {
	cs, err := changesAfter(ctx, s.db, id, after)
	if err != nil || len(cs) > 0 {
		return cs, err
	}
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	return nil, nil
}

// Cancel cancels an order for its customer: allowed until it ships, and a
// no-op on an already cancelled order. Errors: NotFound, Conflict.
func (s *Service) Cancel(ctx context.Context, id string) (Order, error) {
	var out Order
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		o, err := loadOrder(ctx, tx, id, true)
		if err != nil {
			return err
		}
		decided, err := domain.CancelByCustomer(o)
		if err != nil {
			return apperr.New(apperr.Conflict, "", "%s", err)
		}
		if err := s.apply(ctx, tx, o, decided, nil); err != nil {
			return err
		}
		out, err = loadOrder(ctx, tx, id, false)
		return err
	})
	return out, err
}
