package payment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/stdwebhook"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// inboundConsumer names the provider's webhooks in the inbox, so a
// webhook-id already processed is acknowledged and ignored.
const inboundConsumer = "psp-webhooks"

// Routes mounts the provider's webhook receiver.
func (s *Service) Routes(mux *http.ServeMux) { httpx.Mount(mux, s.API()) }

// API is the provider's webhook receiver (s may be nil to read its
// policy). The provider signs its webhooks itself: no scope, and payments
// verifies the signature.
func (s *Service) API() []httpx.Route {
	return []httpx.Route{httpx.Route{Class: "provider"}.With("POST /api/psp/webhooks", s.handleProviderWebhook)}
}

// handleProviderWebhook receives an asynchronous authorization outcome:
// it verifies the Standard Webhooks signature, rejects a timestamp more
// than 5 minutes away, ignores a webhook-id already processed, and applies
// the outcome with its event in one transaction.
func (s *Service) handleProviderWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		httpx.Error(w, r, s.log, apperr.New(apperr.TooLarge, "", "webhook body over 64 KiB"))
		return
	}
	if s.webhookSecret == "" {
		httpx.Error(w, r, s.log, apperr.New(apperr.Unavailable, "", "provider webhooks are not configured: start payments with --psp-webhook-secret"))
		return
	}
	id, err := stdwebhook.Verify(s.webhookSecret, r.Header, body, time.Now())
	if err != nil {
		httpx.Error(w, r, s.log, apperr.Invalidf("webhook-signature", "%v", err))
		return
	}
	var note struct {
		Type string         `json:"type"`
		Data ProviderResult `json:"data"`
	}
	if err := json.Unmarshal(body, &note); err != nil || note.Type != "authorization.completed" || note.Data.OrderID == "" {
		httpx.Error(w, r, s.log, apperr.Invalidf("type", "want an authorization.completed webhook with its operation"))
		return
	}
	if err := s.applyAuthorization(r.Context(), id, note.Data); err != nil {
		httpx.Error(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// unknownOrderGrace is how long a webhook about an order payments has no
// record of is answered "retry" rather than acknowledged and ignored.
// Payments records a payment within seconds of asking for its
// authorization, so an outcome older than this is about an order it never
// handled.
const unknownOrderGrace = 10 * time.Minute

func (s *Service) applyAuthorization(ctx context.Context, webhookID string, op ProviderResult) error {
	p, ok, err := s.loadOne(ctx, op.OrderID)
	if err != nil {
		return err
	}
	if ok && p.Trace != "" {
		// The provider's answer goes on in the order's trace, linked to
		// the webhook's request.
		var span trace.Span
		ctx, span = telemetry.Continue(ctx, p.Trace, "provider webhook", telemetry.AttrOrderID.String(p.OrderID))
		defer span.End()
	}
	if ok && p.Cancelled && op.Outcome == OutcomeApproved && p.State == domain.StateAuthorizing {
		return s.voidLateAuthorization(ctx, webhookID, p)
	}
	return s.recordAuthorization(ctx, webhookID, op)
}

// voidLateAuthorization voids an authorization approved after its order was
// cancelled, before recording it.
func (s *Service) voidLateAuthorization(ctx context.Context, webhookID string, p *domain.Payment) error {
	// Approved after the order was cancelled: void before recording.
	res, err := s.provider.Do(ctx, OpVoid, ProviderRequest{OrderID: p.OrderID, AmountCents: p.Amount, Currency: p.Currency})
	if err != nil {
		return apperr.New(apperr.Unavailable, "", "void the late authorization of %s: %v", p.OrderID, err)
	}
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if seen, err := inbox.Seen(ctx, tx, inboundConsumer, webhookID); err != nil || seen {
			return err
		}
		if _, err := settleAuthorizing(ctx, tx, p.OrderID, domain.StateVoided, ""); err != nil {
			return err
		}
		if res.Outcome != OutcomeDone {
			return nil
		}
		return s.outbox.Emit(ctx, tx, source, event.PaymentVoided, p.OrderID,
			event.Payment{OrderID: p.OrderID, AmountCents: res.AmountCents, Currency: p.Currency, ProviderRef: fmt.Sprintf("psp_%d", res.ID)}, nil)
	})
}

// recordAuthorization records the provider's outcome of an authorization
// still waiting, and emits it.
func (s *Service) recordAuthorization(ctx context.Context, webhookID string, op ProviderResult) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		current, err := stateOf(ctx, tx, op.OrderID)
		if err != nil {
			return err
		}
		switch {
		case current == domain.StatePending:
			// The webhook overtook the provider's "pending" answer, which
			// payments has not recorded yet: have the provider retry.
			return apperr.New(apperr.Unavailable, "", "authorization of %s is still being recorded; retry", op.OrderID)
		case current == "" && time.Since(op.At) < unknownOrderGrace:
			// The same race one step earlier: the batch that asked for the
			// authorization has not committed the payment at all yet.
			// Acknowledging now would drop the outcome.
			return apperr.New(apperr.Unavailable, "", "no payment of %s recorded yet; retry", op.OrderID)
		}
		if seen, err := inbox.Seen(ctx, tx, inboundConsumer, webhookID); err != nil || seen {
			return err
		}
		state, typ := domain.StateFailed, event.PaymentFailed
		var data any = event.PaymentFailure{OrderID: op.OrderID, Reason: op.Reason}
		ref := fmt.Sprintf("psp_%d", op.ID)
		if op.Outcome == OutcomeApproved {
			state, typ = domain.StateAuthorized, event.PaymentAuthorized
			data = event.Payment{OrderID: op.OrderID, AmountCents: op.AmountCents, Currency: op.Currency, ProviderRef: ref}
		}
		// Only an authorization still waiting moves: a repeat or a late
		// webhook (unknown order, already decided) changes nothing.
		moved, err := settleAuthorizing(ctx, tx, op.OrderID, state, ref)
		if err != nil || !moved {
			return err
		}
		return s.outbox.Emit(ctx, tx, source, typ, op.OrderID, data, nil)
	})
}
