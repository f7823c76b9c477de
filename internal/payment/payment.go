// Package payment owns payments. It learns what to charge from
// order.placed, authorizes with the provider when stock is reserved
// (payment.authorized | payment.failed), captures when the shipment is
// created, and compensates a cancelled order: an authorization is voided, a
// capture refunded. Provider calls happen outside database transactions and
// are idempotent by order id, so a redelivered event never charges twice.
package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/telemetry"
)

const source = "ordermesh/payments"

// ConsumerName is the payments saga consumer.
const ConsumerName = "payments-saga"

// Config configures the payments service.
type Config struct {
	DB     *sqldb.DB
	Outbox *outbox.Outbox
	// Provider is the payment provider; nil means a ProviderClient on
	// Client.
	Provider Provider
	Client   ClientConfig
	Logger   *slog.Logger
	// WebhookSecret verifies the provider's webhooks (async authorizations).
	WebhookSecret string
	// TokenKey opens the payment tokens that order.placed carries sealed
	// to payments (package sealed). The token stays sealed in the payments
	// table and is opened only for the provider's authorize call.
	TokenKey sealed.Key
	// TokenKeyText is TokenKey as its flag gives it (base64url), or
	// TokenKeyFile a file that holds it.
	TokenKeyText, TokenKeyFile string
}

// Service applies the payment rules.
type Service struct {
	db            *sqldb.DB
	outbox        *outbox.Outbox
	provider      Provider
	log           *slog.Logger
	webhookSecret string
	tokenKey      sealed.Key
}

// New returns the payments service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{db: cfg.DB, outbox: cfg.Outbox, provider: cfg.Provider, log: cfg.Logger, webhookSecret: cfg.WebhookSecret, tokenKey: cfg.TokenKey}
}

// Consumer is the saga consumer's configuration and handler. Events come
// in batches: each order's events are decided in sequence (with provider
// calls, outside any transaction), different orders in parallel, and the
// whole batch's outcome is committed in one transaction.
func (s *Service) Consumer() (bus.ConsumerConfig, bus.BatchHandler) {
	return bus.ConsumerConfig{
		Name:           ConsumerName,
		Types:          routes.types(),
		Concurrency:    8,
		MaxBatch:       128,
		HandlerTimeout: 20 * time.Second, // room for the provider client's retries
	}, s.handleBatch
}

func (s *Service) handleBatch(ctx context.Context, evs []bus.Event) []error {
	seen, err := inbox.Processed(ctx, s.db, ConsumerName, evs)
	if err != nil {
		return bus.FailAll(len(evs), err)
	}
	orderIDs, groups := byOrder(evs, seen)
	if len(orderIDs) == 0 {
		return nil
	}
	states, err := s.loadMany(ctx, orderIDs)
	if err != nil {
		return bus.FailAll(len(evs), err)
	}
	// Only payments this batch changed are written back, and only if
	// nobody wrote them since they were loaded: a concurrent writer (the
	// provider's webhook, or another instance handling another event of
	// the same order) is never overwritten with stale state. The loser's
	// batch fails and is retried against the winner's state.
	loaded := make(map[string]domain.Payment, len(states))
	for id, p := range states {
		loaded[id] = *p
	}
	errs, emits := s.handleOrders(ctx, evs, orderIDs, groups, states)
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		return s.commitBatch(ctx, tx, evs, seen, errs, emits, orderIDs, states, loaded)
	})
	if err != nil {
		return bus.FailAll(len(evs), err)
	}
	for _, e := range errs {
		if e != nil {
			return errs
		}
	}
	return nil
}

// byOrder groups the indexes of the events not seen before by order, the
// orders in the order of their first event.
func byOrder(evs []bus.Event, seen map[string]bool) ([]string, map[string][]int) {
	var orderIDs []string
	groups := map[string][]int{}
	for i, ev := range evs {
		if seen[ev.ID] {
			continue
		}
		if _, ok := groups[ev.Subject]; !ok {
			orderIDs = append(orderIDs, ev.Subject)
		}
		groups[ev.Subject] = append(groups[ev.Subject], i)
	}
	return orderIDs, groups
}

// handleOrders handles each order's events in sequence (with provider
// calls), different orders in parallel, updating states. It returns each
// event's error and emission.
func (s *Service) handleOrders(ctx context.Context, evs []bus.Event, orderIDs []string, groups map[string][]int, states map[string]*domain.Payment) ([]error, []*domain.Emission) {
	errs := make([]error, len(evs))
	emits := make([]*domain.Emission, len(evs))
	// Each order's goroutine works on its own slot; the map is updated
	// after they are all done.
	finals := make([]*domain.Payment, len(orderIDs))
	var wg sync.WaitGroup
	for k, id := range orderIDs {
		p := states[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { finals[k] = p }()
			for n, i := range groups[id] {
				// The provider call is a child of this event's handling.
				out, err := s.handleOne(telemetry.WithTraceParent(ctx, evs[i].TraceParent), evs[i], &p)
				if err != nil {
					errs[i] = err
					// Later events of this order wait for this one: retry them after it.
					for _, j := range groups[id][n+1:] {
						// %v, not %w: even if that one failed for good, these are retried.
						errs[j] = fmt.Errorf("waiting for event %s of the same order, which failed: %v", evs[i].ID, err)
					}
					break
				}
				emits[i] = out
			}
		}()
	}
	wg.Wait()
	for k, id := range orderIDs {
		states[id] = finals[k]
	}
	return errs, emits
}

// commitBatch records, in tx, the events handled without error: their
// emissions, their inbox records, and the payments they changed.
func (s *Service) commitBatch(ctx context.Context, tx *sqldb.Tx, evs []bus.Event, seen map[string]bool, errs []error, emits []*domain.Emission,
	orderIDs []string, states map[string]*domain.Payment, loaded map[string]domain.Payment) error {
	var done []bus.Event
	touched := map[string]bool{}
	for i, ev := range evs {
		if seen[ev.ID] || errs[i] != nil {
			continue
		}
		done = append(done, ev)
		touched[ev.Subject] = true
		if e := emits[i]; e != nil {
			if err := s.outbox.Emit(ctx, tx, source, e.Type, ev.Subject, e.Data, &evs[i]); err != nil {
				return err
			}
		}
	}
	if len(done) == 0 {
		return nil
	}
	if err := inbox.Record(ctx, tx, ConsumerName, done); err != nil {
		return err
	}
	for _, id := range orderIDs {
		p := states[id]
		before, existed := loaded[id]
		if !touched[id] || p == nil || (existed && before == *p) {
			continue
		}
		if err := save(ctx, tx, p, existed); err != nil {
			return err
		}
	}
	return nil
}

// handleOne applies one event to the order's payment *pp (nil if none
// yet): the event's rule decides, the provider is called if it asks for
// money to move, and its answer is settled. It returns the event to emit,
// if any. A provider failure is a transient error.
func (s *Service) handleOne(ctx context.Context, ev bus.Event, pp **domain.Payment) (*domain.Emission, error) {
	p, c, err := routes.decide(*pp, ev)
	if err != nil {
		return nil, err
	}
	if p != nil && p.Trace == "" {
		p.Trace = ev.TraceParent
	}
	*pp = p
	if c == nil {
		return nil, nil
	}
	req := request(*p, *c)
	var res ProviderResult
	if c.Op == OpAuthorize {
		var ok bool
		if req.Token, ok = s.openToken(p.OrderID, req.Token); !ok {
			// Sealed for another order or another key, or damaged: no
			// card to charge, which the saga handles like a decline.
			res = ProviderResult{Outcome: OutcomeDeclined, Reason: "payment_token_unreadable"}
		}
	}
	if res.Outcome == "" {
		if res, err = s.provider.Do(ctx, c.Op, req); err != nil {
			return nil, err
		}
	}
	after, e, err := domain.Settle(*p, *c, domain.Answer{ID: res.ID, Outcome: res.Outcome, Reason: res.Reason, AmountCents: res.AmountCents})
	if errors.Is(err, domain.ErrCaptureRejected) {
		return nil, apperr.Permanent(err) // the same capture would be rejected again
	}
	if err != nil {
		return nil, err
	}
	*pp = &after
	return e, nil
}

// openToken opens the payment token of order orderID as stored: sealed, or
// in the clear for an order.placed stored before tokens were sealed.
func (s *Service) openToken(orderID, stored string) (string, bool) {
	if !sealed.IsSealed(stored) {
		return stored, stored != ""
	}
	token, err := s.tokenKey.Open(orderID, stored)
	if err != nil {
		s.log.Warn("payment token does not open; the payment fails", "order_id", orderID, "err", err)
		return "", false
	}
	return token, true
}
