// Package pspapi is the payment provider's API as it is on the wire: its
// operations and outcomes, the body of a request, and the answer (a ledger
// entry, also the data of the provider's webhooks). It is what a card
// processor's client library would give: payments' client speaks it, and
// ordermesh's simulator (internal/psp) serves it, without either importing
// the other. It imports nothing of ordermesh.
package pspapi

import "time"

// Operations, and their outcomes.
const (
	OpAuthorize = "authorize"
	OpCapture   = "capture"
	OpVoid      = "void"
	OpRefund    = "refund"

	OutcomeApproved = "approved" // authorize succeeded
	OutcomePending  = "pending"  // async: the outcome follows by signed webhook
	OutcomeDeclined = "declined" // authorize refused
	OutcomeDone     = "done"     // capture, void or refund took effect
	OutcomeRejected = "rejected" // capture, void or refund not possible in this state
)

// ClientTimeout is how long a client waits for one answer by default: a
// provider slower than that answers no one.
const ClientTimeout = 2 * time.Second

// Request is the body of every operation.
type Request struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Token       string `json:"token,omitempty"`
	// IdempotencyKey goes in the Idempotency-Key header, not the body;
	// empty means the order id.
	IdempotencyKey string `json:"-"`
}

// Operation is a ledger entry: the answer to a request, and the data of
// the provider's webhooks.
type Operation struct {
	ID          int64     `json:"id"`
	Op          string    `json:"op"`
	OrderID     string    `json:"order_id"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
	Outcome     string    `json:"outcome"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
}
