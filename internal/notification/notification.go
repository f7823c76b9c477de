// Package notification records one customer message per customer-facing
// event (placed, confirmed, shipped, completed, cancelled) in its own store.
package notification

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/notification/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// ConsumerName is the notifications consumer.
const ConsumerName = "notifications-send"

// Message is a customer message.
type Message struct {
	EventID    string    `json:"event_id"`
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Type       string    `json:"type"`
	Subject    string    `json:"subject"`
	Body       string    `json:"body"`
	At         time.Time `json:"at"`
}

// Service records messages.
type Service struct {
	db  *sqldb.DB
	log *slog.Logger
}

// New returns the notifications service.
func New(db *sqldb.DB, log *slog.Logger) *Service { return &Service{db: db, log: log} }

// Consumer is the consumer's configuration and handler.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	// Off the order's critical path: one worker that lingers, so that the
	// events of many orders share a transaction.
	// Every type the customer hears of, each with its data typed and its
	// message written by a pure function of it.
	routes := inbox.Routes{
		inbox.On(event.OrderPlaced, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Placed) error {
			if err := recordCustomer(ctx, tx, ev.Subject, d.CustomerID); err != nil {
				return err
			}
			return s.notify(ctx, tx, ev, d.CustomerID, domain.Placed(ev.Subject))
		}),
		inbox.On(event.OrderConfirmed, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Confirmed) error {
			return s.notify(ctx, tx, ev, d.CustomerID, domain.Confirmed(ev.Subject))
		}),
		inbox.On(event.ShipmentCreated, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Shipment) error {
			return s.notify(ctx, tx, ev, "", domain.Shipped(ev.Subject, d))
		}),
		inbox.On(event.OrderCompleted, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.OrderRef) error {
			return s.notify(ctx, tx, ev, d.CustomerID, domain.Completed(ev.Subject))
		}),
		inbox.On(event.OrderCancelled, func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d event.Cancelled) error {
			return s.notify(ctx, tx, ev, d.CustomerID, domain.Cancelled(ev.Subject, d))
		}),
	}
	// A message stands on its own (one waiting for its order's customer is
	// retried), so one order's events need not stay on one instance.
	cfg := bus.ConsumerConfig{Name: ConsumerName, Concurrency: 1, Linger: 20 * time.Millisecond, Types: routes.Types(), Unpartitioned: true}
	return cfg, inbox.BatchHandler(s.db, ConsumerName, routes.Handler(ConsumerName))
}

// notify writes the customer's message about ev, once; customerID is the
// event's, or "" to look it up from the order's order.placed.
func (s *Service) notify(ctx context.Context, tx *sqldb.Tx, ev bus.Event, customerID string, m domain.Message) error {
	if customerID == "" {
		var err error
		if customerID, err = customerOf(ctx, tx, ev.Subject); err != nil {
			return err
		}
	}
	return insertMessage(ctx, tx, Message{EventID: ev.ID, OrderID: ev.Subject, CustomerID: customerID, Type: ev.Type,
		Subject: m.Subject, Body: m.Body, At: tx.Now()})
}

// Routes mounts the admin view of sent messages.
func (s *Service) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the admin view of sent messages with its policy (s may be nil to
// read it).
func (s *Service) API() []httpx.Route {
	return []httpx.Route{httpx.Route{Class: "admin", Scope: identity.Admin}.With("GET /api/admin/notifications", s.handleMessages)}
}

func (s *Service) handleMessages(w http.ResponseWriter, r *http.Request) {
	msgs, err := s.Messages(r.Context(), r.URL.Query().Get("order_id"))
	if err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, msgs)
}
