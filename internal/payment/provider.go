package payment

import (
	"context"
	"time"
)

// The payment provider's API as payments uses it: its operations, their
// outcomes, a request and its answer. payments owns these types; the
// provider (a real one, or ordermesh's simulator in internal/psp) is an
// outside system reached through ProviderClient, which speaks its JSON.
const (
	OpAuthorize = "authorize"
	OpCapture   = "capture"
	OpVoid      = "void"
	OpRefund    = "refund"

	OutcomeApproved = "approved" // authorize succeeded
	OutcomePending  = "pending"  // async: the outcome follows by signed webhook
	OutcomeDeclined = "declined" // authorize refused
	OutcomeDone     = "done"     // capture, void or refund took effect
)

// ProviderRequest asks the provider for one operation on an order's money.
type ProviderRequest struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Token       string `json:"token,omitempty"`
	// IdempotencyKey goes in the Idempotency-Key header, not the body;
	// empty means the order id.
	IdempotencyKey string `json:"-"`
}

// ProviderResult is the provider's answer, and the data of its webhooks.
type ProviderResult struct {
	ID          int64     `json:"id"`
	Op          string    `json:"op"`
	OrderID     string    `json:"order_id"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
	Outcome     string    `json:"outcome"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
}

// Provider performs payment operations; ProviderClient is the one over HTTP.
type Provider interface {
	Do(ctx context.Context, op string, req ProviderRequest) (ProviderResult, error)
}
