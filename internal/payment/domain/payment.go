// Package domain is the payment rules, as pure functions of plain values:
// what a saga event does to an order's payment and which provider call it
// needs, and what the provider's answer does. It imports the event catalog
// and the standard library only (TestDomainsImportNothing). The payments
// service loads a payment, asks a rule, makes the call outside any
// transaction, settles the answer, and writes the payment and the event.
// Money only moves through a call, so only Settle emits events.
package domain

import "errors"

// Payment states.
const (
	StatePending     = "pending"
	StateAuthorizing = "authorizing" // the provider answered pending; its webhook decides
	StateAuthorized  = "authorized"
	StateFailed      = "failed"
	StateCaptured    = "captured"
	StateVoided      = "voided"
	StateRefunded    = "refunded"
)

// Payment is an order's payment as the rules see it.
type Payment struct {
	OrderID  string
	Amount   int64 // cents; 0 until order.placed is known
	Currency string
	// Token is the payment token as order.placed carries it (sealed to
	// payments): the rules pass it on, only the service opens it.
	Token     string
	State     string
	Cancelled bool
	Ref       string // the provider's reference of the last operation
	// Trace is the order's trace, from the first of its events payments
	// handled: a provider's webhook about it continues it.
	Trace string
	// Version is the row's version when loaded; every write moves it.
	Version int64
}

// The provider's operations on an order's money, and its answers.
const (
	OpAuthorize = "authorize"
	OpCapture   = "capture"
	OpVoid      = "void"
	OpRefund    = "refund"

	OutcomeApproved = "approved" // authorize succeeded
	OutcomePending  = "pending"  // async: the outcome follows by webhook
	OutcomeDeclined = "declined" // authorize refused
	OutcomeDone     = "done"     // capture, void or refund took effect
)

// Call is a provider call a decision needs.
type Call struct {
	Op  string // OpAuthorize, OpCapture, OpVoid or OpRefund
	Key string // a void's or refund's idempotency key
}

// Answer is the provider's answer to a call.
type Answer struct {
	ID          int64 // the provider's operation id
	Outcome     string
	Reason      string
	AmountCents int64 // what a void or refund moved
}

// Emission is an event to emit about the payment's order.
type Emission struct {
	Type string
	Data any
}

// ErrCaptureRejected: the provider refused a capture. Retrying the same
// capture cannot change that, so the service dead-letters the event.
var ErrCaptureRejected = errors.New("capture rejected by the provider")
