// Package notification records one customer message per customer-facing
// event (placed, confirmed, shipped, completed, cancelled) in its own store.
package notification

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
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
	// Every type the customer hears of, each told by compose.
	var routes inbox.Routes
	for _, typ := range []string{event.OrderPlaced, event.OrderConfirmed, event.ShipmentCreated, event.OrderCompleted, event.OrderCancelled} {
		routes = append(routes, inbox.On(typ, s.notify))
	}
	// A message stands on its own (one waiting for its order's customer is
	// retried), so one order's events need not stay on one instance.
	cfg := bus.ConsumerConfig{Name: ConsumerName, Concurrency: 1, Linger: 20 * time.Millisecond, Types: routes.Types(), Unpartitioned: true}
	return cfg, inbox.BatchHandler(s.db, ConsumerName, routes.Handler(ConsumerName))
}

// about is what a customer's message needs of an event's data.
type about struct {
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
	Tracking   string `json:"tracking"`
}

// notify writes the customer's message about ev, once.
func (s *Service) notify(ctx context.Context, tx *sqldb.Tx, ev bus.Event, d about) error {
	orderID := ev.Subject
	if ev.Type == event.OrderPlaced {
		if err := recordCustomer(ctx, tx, orderID, d.CustomerID); err != nil {
			return err
		}
	}
	if d.CustomerID == "" {
		var err error
		if d.CustomerID, err = customerOf(ctx, tx, orderID); err != nil {
			return err
		}
	}
	subject, body, err := compose(ev.Type, orderID, d.Reason, d.Tracking)
	if err != nil {
		return err
	}
	return insertMessage(ctx, tx, Message{EventID: ev.ID, OrderID: orderID, CustomerID: d.CustomerID, Type: ev.Type,
		Subject: subject, Body: body, At: tx.Now()})
}

// compose writes the customer's message about an event of type typ: the
// notification rules, a pure function.
func compose(typ, orderID, reason, tracking string) (subject, body string, err error) {
	switch typ {
	case event.OrderPlaced:
		return "We received your order", "Order " + orderID + " is being processed.", nil
	case event.OrderConfirmed:
		return "Your order is confirmed", "Order " + orderID + " is paid and will ship soon.", nil
	case event.ShipmentCreated:
		return "Your order has shipped", "Order " + orderID + " is on its way, tracking " + tracking + ".", nil
	case event.OrderCompleted:
		return "Your order is complete", "Thank you for order " + orderID + ".", nil
	case event.OrderCancelled:
		return "Your order was cancelled", "Order " + orderID + " was cancelled (" + reason + "). You have not been charged.", nil
	}
	return "", "", bus.Permanent(fmt.Errorf("notifications does not handle %s", typ))
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
