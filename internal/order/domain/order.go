// Package domain is the order rules: the order as the rules see it and
// what each saga event or command does to it, as pure functions of plain
// values. It imports the event catalog and the standard library only
// (TestDomainsImportNothing), so its whole table is tested without a
// database, a broker or a clock. The orders service loads an order, asks
// these rules, and saves the moves and emits the events they return in one
// transaction.
package domain

import (
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
)

// Statuses.
const (
	Pending   = "pending"
	Confirmed = "confirmed"
	Shipped   = "shipped"
	Completed = "completed"
	Cancelled = "cancelled"
)

// Order is an order as the API shows it.
type Order struct {
	ID              string        `json:"id"`
	CustomerID      string        `json:"customer_id"`
	Status          string        `json:"status"`
	Items           []event.Line  `json:"items"`
	TotalCents      int64         `json:"total_cents"`
	Currency        string        `json:"currency"`
	CancelReason    string        `json:"cancel_reason"`
	Version         int           `json:"version"`
	ShippingAddress event.Address `json:"shipping_address"`
	CreatedAt       time.Time     `json:"created_at"`
	Timeline        []Step        `json:"timeline,omitempty"`

	// HasShipped and Captured record the two halves of completion, in
	// either order; the API does not show them.
	HasShipped bool `json:"-"`
	Captured   bool `json:"-"`
	// TraceParent is the trace the order was placed in: work it causes
	// later (a cancel, its deadline) continues it.
	TraceParent string `json:"-"`
}

// Step is one entry of an order's timeline.
type Step struct {
	Type string    `json:"type"`
	At   time.Time `json:"at"`
}

// Cancellable reports whether a customer may still cancel: not yet shipped.
func (o Order) Cancellable() bool {
	return o.Status == Pending || o.Status == Confirmed || o.Status == Cancelled
}

// Terminal reports whether the order has reached a final status.
func (o Order) Terminal() bool { return o.Status == Completed || o.Status == Cancelled }

// NotCancellable refuses a customer's cancel of an order that has shipped;
// the service answers it as a conflict.
type NotCancellable struct{ ID, Status string }

func (e NotCancellable) Error() string {
	return fmt.Sprintf("order %s is %s; it can no longer be cancelled", e.ID, e.Status)
}
