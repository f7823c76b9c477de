// Package payment owns payments. It learns what to charge from
// order.placed, authorizes with the provider when stock is reserved
// (payment.authorized | payment.failed), captures when the shipment is
// created, and compensates a cancelled order: an authorization is voided, a
// capture refunded. Provider calls happen outside database transactions and
// are idempotent by order id, so a redelivered event never charges twice.
package payment

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/psp"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the payments schema.
func Migrations() sqldb.Migrations { return sqldb.Embedded("payments", migrations) }

const source = "ordermesh/payments"

// ConsumerName is the payments saga consumer.
const ConsumerName = "payments-saga"

// Payment states.
const (
	statePending    = "pending"
	stateAuthorized = "authorized"
	stateFailed     = "failed"
	stateCaptured   = "captured"
	stateVoided     = "voided"
	stateRefunded   = "refunded"
)

// Service applies the payment rules.
type Service struct {
	db       *sqldb.DB
	outbox   *outbox.Outbox
	provider Provider
	log      *slog.Logger
}

// New returns the payments service.
func New(db *sqldb.DB, o *outbox.Outbox, provider Provider, log *slog.Logger) *Service {
	return &Service{db: db, outbox: o, provider: provider, log: log}
}

// Consumer is the saga consumer's configuration and handler. Events are
// handled one at a time (provider calls are slow) by many workers; events
// of one order go to one worker, in order.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.Handler) {
	return bus.ConsumerConfig{
		Name:        ConsumerName,
		Types:       []string{event.OrderPlaced, event.StockReserved, event.OrderCancelled, event.ShipmentCreated},
		Concurrency: 32,
		AckWait:     20 * time.Second, // room for the provider client's retries
	}, s.handle
}

type payment struct {
	orderID, currency, token, state, ref string
	amount                               int64
	cancelled                            bool
}

func (s *Service) load(ctx context.Context, orderID string) (payment, bool, error) {
	var p payment
	var cancelled int
	err := s.db.QueryRow(ctx, "SELECT order_id, amount_cents, currency, token, state, cancelled, provider_ref FROM payments WHERE order_id = ?", orderID).
		Scan(&p.orderID, &p.amount, &p.currency, &p.token, &p.state, &cancelled, &p.ref)
	if errors.Is(err, sql.ErrNoRows) {
		return payment{}, false, nil
	}
	p.cancelled = cancelled == 1
	return p, err == nil, err
}

// record commits the outcome of handling ev: the inbox entry, the new
// state and the event to emit (typ "" for none).
func (s *Service) record(ctx context.Context, ev bus.Event, update func(tx *sqldb.Tx) error, typ string, data any) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		seen, err := inbox.Seen(ctx, tx, ConsumerName, ev.ID)
		if err != nil || seen {
			return err
		}
		if update != nil {
			if err := update(tx); err != nil {
				return err
			}
		}
		if typ == "" {
			return nil
		}
		return s.outbox.Emit(ctx, tx, source, typ, ev.Subject, data, &ev)
	})
}

func setState(ctx context.Context, orderID, state, ref string, cancelled bool) func(tx *sqldb.Tx) error {
	return func(tx *sqldb.Tx) error {
		c := 0
		if cancelled {
			c = 1
		}
		_, err := tx.Exec(ctx, "UPDATE payments SET state = ?, provider_ref = ?, cancelled = ? WHERE order_id = ?", state, ref, c, orderID)
		return err
	}
}

func (s *Service) handle(ctx context.Context, ev bus.Event) error {
	switch ev.Type {
	case event.OrderPlaced:
		var d event.Placed
		if err := ev.DecodeData(&d); err != nil {
			return err
		}
		return s.record(ctx, ev, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO payments (order_id, amount_cents, currency, token, state) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (order_id) DO NOTHING`, d.OrderID, d.TotalCents, d.Currency, d.PaymentToken, statePending)
			return err
		}, "", nil)
	case event.StockReserved:
		return s.authorize(ctx, ev)
	case event.ShipmentCreated:
		return s.capture(ctx, ev)
	case event.OrderCancelled:
		return s.compensate(ctx, ev)
	}
	return bus.Permanent(fmt.Errorf("payments does not handle %s", ev.Type))
}

func (s *Service) authorize(ctx context.Context, ev bus.Event) error {
	p, ok, err := s.load(ctx, ev.Subject)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("stock.reserved for %s before its order.placed was recorded; will retry", ev.Subject)
	}
	if p.cancelled || p.state != statePending {
		return s.record(ctx, ev, nil, "", nil) // late or duplicate: nothing to do
	}
	res, err := s.provider.Do(ctx, psp.OpAuthorize, psp.Request{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, Token: p.token})
	if err != nil {
		return err // transient: redelivered with backoff
	}
	if res.Outcome != psp.Approved {
		return s.record(ctx, ev, setState(ctx, p.orderID, stateFailed, "", false), event.PaymentFailed,
			event.PaymentFailure{OrderID: p.orderID, Reason: res.Reason})
	}
	ref := fmt.Sprintf("psp_%d", res.ID)
	return s.record(ctx, ev, setState(ctx, p.orderID, stateAuthorized, ref, false), event.PaymentAuthorized,
		event.Payment{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, ProviderRef: ref})
}

func (s *Service) capture(ctx context.Context, ev bus.Event) error {
	p, ok, err := s.load(ctx, ev.Subject)
	if err != nil {
		return err
	}
	if !ok || p.cancelled || p.state != stateAuthorized {
		return s.record(ctx, ev, nil, "", nil)
	}
	res, err := s.provider.Do(ctx, psp.OpCapture, psp.Request{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency})
	if err != nil {
		return err
	}
	if res.Outcome != psp.Done {
		return bus.Permanent(fmt.Errorf("capture of %s rejected by the provider: %s", p.orderID, res.Reason))
	}
	ref := fmt.Sprintf("psp_%d", res.ID)
	return s.record(ctx, ev, setState(ctx, p.orderID, stateCaptured, ref, false), event.PaymentCaptured,
		event.Payment{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency, ProviderRef: ref})
}

// compensate undoes what was charged for a cancelled order: a void for an
// authorization (also attempted while still pending, in case an attempt
// whose answer was lost did authorize), a refund for a capture.
func (s *Service) compensate(ctx context.Context, ev bus.Event) error {
	p, ok, err := s.load(ctx, ev.Subject)
	if err != nil {
		return err
	}
	if !ok {
		return s.record(ctx, ev, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO payments (order_id, amount_cents, currency, token, state, cancelled) VALUES (?, 0, '', '', ?, 1)
				ON CONFLICT (order_id) DO UPDATE SET cancelled = 1`, ev.Subject, statePending)
			return err
		}, "", nil)
	}
	if p.cancelled {
		return s.record(ctx, ev, nil, "", nil)
	}
	var op, state, typ string
	switch p.state {
	case stateAuthorized, statePending:
		op, state, typ = psp.OpVoid, stateVoided, event.PaymentVoided
	case stateCaptured:
		op, state, typ = psp.OpRefund, stateRefunded, event.PaymentRefunded
	default: // failed, voided, refunded: nothing held
		return s.record(ctx, ev, setState(ctx, p.orderID, p.state, p.ref, true), "", nil)
	}
	res, err := s.provider.Do(ctx, op, psp.Request{OrderID: p.orderID, AmountCents: p.amount, Currency: p.currency})
	if err != nil {
		return err
	}
	if res.Outcome != psp.Done {
		// Nothing to void (never authorized) or already undone.
		return s.record(ctx, ev, setState(ctx, p.orderID, p.state, p.ref, true), "", nil)
	}
	ref := fmt.Sprintf("psp_%d", res.ID)
	return s.record(ctx, ev, setState(ctx, p.orderID, state, ref, true), typ,
		event.Payment{OrderID: p.orderID, AmountCents: res.AmountCents, Currency: p.currency, ProviderRef: ref})
}
