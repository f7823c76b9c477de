package payment

import (
	"context"

	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// The payment provider's API as payments uses it: its operations, their
// outcomes, a request and its answer, in the provider's wire format
// (pspapi). The provider (a real one, or ordermesh's simulator in
// internal/psp) is an outside system reached through ProviderClient.
const (
	OpAuthorize = pspapi.OpAuthorize
	OpCapture   = pspapi.OpCapture
	OpVoid      = pspapi.OpVoid
	OpRefund    = pspapi.OpRefund

	OutcomeApproved = pspapi.OutcomeApproved
	OutcomePending  = pspapi.OutcomePending
	OutcomeDeclined = pspapi.OutcomeDeclined
	OutcomeDone     = pspapi.OutcomeDone
)

type (
	// ProviderRequest asks the provider for one operation on an order's money.
	ProviderRequest = pspapi.Request
	// ProviderResult is the provider's answer, and the data of its webhooks.
	ProviderResult = pspapi.Operation
)

// Provider performs payment operations; ProviderClient is the one over HTTP.
type Provider interface {
	Do(ctx context.Context, op string, req ProviderRequest) (ProviderResult, error)
}
