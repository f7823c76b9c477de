package payment

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/payment/domain"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// gate holds one provider operation of one instance, before or after the
// provider performs it, until the test lets it go: the way to make two
// instances interleave at exactly the point where they race.
type gate struct {
	inner   Provider
	op      string
	after   bool // hold after the provider answered, not before asking
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Do(ctx context.Context, op string, req ProviderRequest) (ProviderResult, error) {
	if op != g.op {
		return g.inner.Do(ctx, op, req)
	}
	hold := func() {
		close(g.entered)
		<-g.release
	}
	if !g.after {
		hold()
	}
	res, err := g.inner.Do(ctx, op, req)
	if g.after {
		hold()
	}
	return res, err
}

// TestInstancesRacingOnOneOrderLeaveNothingHeld runs two payments
// instances on one database and one provider, and makes one of them move
// money for an order while the other cancels it. Whichever records first,
// the loser's retry must leave the provider holding nothing for the
// cancelled order, and the payment must say what was undone.
func TestInstancesRacingOnOneOrderLeaveNothingHeld(t *testing.T) {
	sets := []sqldb.Migrations{Migrations(), outbox.Migrations(), inbox.Migrations()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name string
		// before are the order's events the instances agree on. Then
		// instance A handles held and is held at its provider call (gateOp,
		// before or after the provider performs it) while B handles other
		// from start to commit. A's save must then lose, and its retry
		// put things right.
		before    []string
		held      string
		other     string
		gateOp    string
		gateAfter bool
		wantState string
		wantEvent string
	}{
		{
			// B's void finds nothing to void; then A's authorization is
			// approved and A's save loses to B's.
			name: "authorize after the cancel's void", before: []string{event.OrderPlaced},
			held: event.StockReserved, other: event.OrderCancelled, gateOp: OpAuthorize,
			wantState: domain.StateVoided, wantEvent: event.PaymentVoided,
		},
		{
			// A's authorization is approved; B's void undoes it; A's save
			// of "authorized" loses to B's "voided".
			name: "authorize before the cancel's void", before: []string{event.OrderPlaced},
			held: event.StockReserved, other: event.OrderCancelled, gateOp: OpAuthorize, gateAfter: true,
			wantState: domain.StateVoided, wantEvent: event.PaymentVoided,
		},
		{
			// A captures; B's void is refused (already captured); A's save
			// of "captured" loses to B's "cancelled".
			name: "capture before the cancel's void", before: []string{event.OrderPlaced, event.StockReserved},
			held: event.ShipmentCreated, other: event.OrderCancelled, gateOp: OpCapture, gateAfter: true,
			wantState: domain.StateRefunded, wantEvent: event.PaymentRefunded,
		},
		{
			// A's void finds nothing to void; then B's authorization is
			// approved and recorded first; A's save of the cancel loses.
			name: "cancel's void before an authorize recorded first", before: []string{event.OrderPlaced},
			held: event.OrderCancelled, other: event.StockReserved, gateOp: OpVoid, gateAfter: true,
			wantState: domain.StateVoided, wantEvent: event.PaymentVoided,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sqldbtest.Each(t, sets, func(t *testing.T, dsn string, dbA *sqldb.DB) {
				ctx := context.Background()
				dbB := sqldbtest.Open(t, dsn, sets...)
				provider, client := startProvider(t, log)
				g := &gate{inner: client, op: c.gateOp, after: c.gateAfter, entered: make(chan struct{}), release: make(chan struct{})}
				a := New(Config{DB: dbA, Outbox: outbox.New(dbA), Provider: client, Logger: log})
				gatedA := New(Config{DB: dbA, Outbox: outbox.New(dbA), Provider: g, Logger: log})
				b := New(Config{DB: dbB, Outbox: outbox.New(dbB), Provider: client, Logger: log})

				orderID := fmt.Sprintf("order-%d", i)
				events := map[string]bus.Event{
					event.OrderPlaced: bustest.NewEvent(t, event.OrderPlaced, orderID, event.Placed{
						OrderID: orderID, CustomerID: "ada", TotalCents: 2500, Currency: "EUR", PaymentToken: psp.TokenOK,
						Items: []event.Line{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1250}},
					}),
					event.StockReserved:   bustest.NewEvent(t, event.StockReserved, orderID, event.Reserved{OrderID: orderID}),
					event.ShipmentCreated: bustest.NewEvent(t, event.ShipmentCreated, orderID, event.Shipment{OrderID: orderID, ShipmentID: "s1"}),
					event.OrderCancelled:  bustest.NewEvent(t, event.OrderCancelled, orderID, event.Cancelled{OrderID: orderID, CustomerID: "ada", Reason: event.ReasonCustomerRequest}),
				}
				for _, typ := range c.before {
					if errs := a.handleBatch(ctx, []bus.Event{events[typ]}); errs != nil {
						t.Fatalf("%s: %v", typ, errs)
					}
				}

				heldEv := events[c.held]
				done := make(chan []error, 1)
				go func() { done <- gatedA.handleBatch(ctx, []bus.Event{heldEv}) }()
				select {
				case <-g.entered:
				case <-time.After(10 * time.Second):
					t.Fatalf("instance A never called the provider for %s", c.gateOp)
				}
				if errs := b.handleBatch(ctx, []bus.Event{events[c.other]}); errs != nil {
					t.Fatalf("B handling %s: %v", c.other, errs)
				}
				close(g.release)
				if errs := <-done; errs == nil {
					t.Errorf("A's %s was recorded over B's %s; want it refused and retried", c.held, c.other)
				}
				// The broker redelivers what failed; any instance may get it.
				if errs := a.handleBatch(ctx, []bus.Event{heldEv}); errs != nil {
					t.Fatalf("retry of %s: %v", c.held, errs)
				}

				if held, charged, ledger := holdings(t, provider, orderID); held != 0 || charged != 0 {
					t.Errorf("provider holds %d and charged %d for the cancelled order, want 0 and 0; ledger: %+v", held, charged, ledger)
				}
				states, err := a.loadMany(ctx, []string{orderID})
				if err != nil {
					t.Fatal(err)
				}
				if p := states[orderID]; p == nil || p.State != c.wantState || !p.Cancelled {
					t.Errorf("payment = %+v, want %s and cancelled", p, c.wantState)
				}
				var n int
				if err := dbA.QueryRow(ctx, "SELECT COUNT(*) FROM outbox WHERE subject = ? AND type = ?", orderID, c.wantEvent).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("%d %s events in the outbox, want 1", n, c.wantEvent)
				}
			})
		})
	}
}

// startProvider serves the provider simulator over HTTP and returns it and
// a client of it.
func startProvider(t *testing.T, log *slog.Logger) (*psp.Server, Provider) {
	t.Helper()
	pspDB := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "psp.db"), psp.Migrations())
	provider := psp.New(pspDB, psp.Config{APIKey: "test-provider-key"}, log)
	srv := httptest.NewServer(provider.ProviderAPI())
	t.Cleanup(srv.Close)
	return provider, NewProviderClient(ClientConfig{BaseURL: srv.URL, APIKey: "test-provider-key"})
}

// holdings sums the provider's ledger for an order: what it holds
// (authorized, not voided or captured) and what it charged (captured, not
// refunded).
func holdings(t *testing.T, provider *psp.Server, orderID string) (held, charged int64, ledger []pspapi.Operation) {
	t.Helper()
	ledger, err := provider.Ledger(context.Background(), orderID)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ledger {
		switch {
		case op.Op == OpAuthorize && op.Outcome == pspapi.OutcomeApproved:
			held += op.AmountCents
		case op.Op == OpVoid && op.Outcome == pspapi.OutcomeDone:
			held -= op.AmountCents
		case op.Op == OpCapture && op.Outcome == pspapi.OutcomeDone:
			held -= op.AmountCents
			charged += op.AmountCents
		case op.Op == OpRefund && op.Outcome == pspapi.OutcomeDone:
			charged -= op.AmountCents
		}
	}
	return held, charged, ledger
}

// TestCancelRecordedBeforeTheOrderVoidsACrashedAuthorization: an instance
// authorized an order and died before recording it. Then the order's
// deadline cancelled it, and the cancellation reached payments before the
// order.placed it had not recorded. The redelivered stock.reserved must
// void that authorization, and only once order.placed has told payments
// the amount and currency, so the payment.voided it emits is whole.
func TestCancelRecordedBeforeTheOrderVoidsACrashedAuthorization(t *testing.T) {
	sets := []sqldb.Migrations{Migrations(), outbox.Migrations(), inbox.Migrations()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	schemas, err := event.LoadSchemas()
	if err != nil {
		t.Fatal(err)
	}
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		provider, client := startProvider(t, log)
		s := New(Config{DB: db, Outbox: outbox.New(db), Provider: client, Logger: log})
		const orderID = "order-crashed"
		placed := bustest.NewEvent(t, event.OrderPlaced, orderID, event.Placed{
			OrderID: orderID, CustomerID: "ada", TotalCents: 2500, Currency: "EUR", PaymentToken: psp.TokenOK,
			Items: []event.Line{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1250}},
		})
		reserved := bustest.NewEvent(t, event.StockReserved, orderID, event.Reserved{OrderID: orderID})
		cancelled := bustest.NewEvent(t, event.OrderCancelled, orderID, event.Cancelled{OrderID: orderID, CustomerID: "ada", Reason: event.ReasonTimeout})

		// The instance that died got this far.
		if _, err := client.Do(ctx, OpAuthorize, ProviderRequest{OrderID: orderID, AmountCents: 2500, Currency: "EUR", Token: psp.TokenOK}); err != nil {
			t.Fatal(err)
		}
		if errs := s.handleBatch(ctx, []bus.Event{cancelled}); errs != nil {
			t.Fatalf("order.cancelled: %v", errs)
		}
		if errs := s.handleBatch(ctx, []bus.Event{reserved}); errs == nil || errs[0] == nil || bus.IsPermanent(errs[0]) {
			t.Fatalf("stock.reserved before order.placed = %v, want a transient error (retry once the amount is known)", errs)
		}
		if held, _, ledger := holdings(t, provider, orderID); held != 2500 {
			t.Fatalf("provider holds %d before order.placed is recorded, want the crashed authorization's 2500; ledger: %+v", held, ledger)
		}
		for _, ev := range []bus.Event{placed, reserved} {
			if errs := s.handleBatch(ctx, []bus.Event{ev}); errs != nil {
				t.Fatalf("%s: %v", ev.Type, errs)
			}
		}
		if held, charged, ledger := holdings(t, provider, orderID); held != 0 || charged != 0 {
			t.Errorf("provider holds %d and charged %d for the cancelled order, want 0 and 0; ledger: %+v", held, charged, ledger)
		}
		var data []byte
		if err := db.QueryRow(ctx, "SELECT data FROM outbox WHERE subject = ? AND type = ?", orderID, event.PaymentVoided).Scan(&data); err != nil {
			t.Fatalf("no payment.voided in the outbox: %v", err)
		}
		if err := schemas.Validate(event.PaymentVoided, data); err != nil {
			t.Errorf("payment.voided %s: %v", data, err)
		}
	})
}

// TestPaymentOfAnOrderCancelledBeforePaymentEndsCancelled: an order
// cancelled before any authorization (its cancel before or after its
// order.placed) leaves a payment in the final state cancelled, not
// pending, and nothing held.
func TestPaymentOfAnOrderCancelledBeforePaymentEndsCancelled(t *testing.T) {
	sets := []sqldb.Migrations{Migrations(), outbox.Migrations(), inbox.Migrations()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sqldbtest.Each(t, sets, func(t *testing.T, _ string, db *sqldb.DB) {
		ctx := context.Background()
		provider, client := startProvider(t, log)
		s := New(Config{DB: db, Outbox: outbox.New(db), Provider: client, Logger: log})
		for name, order := range map[string][]string{"CancelFirst": {event.OrderCancelled, event.OrderPlaced}, "PlacedFirst": {event.OrderPlaced, event.OrderCancelled}} {
			orderID := "order-" + name
			evs := map[string]bus.Event{
				event.OrderPlaced: bustest.NewEvent(t, event.OrderPlaced, orderID, event.Placed{OrderID: orderID, CustomerID: "ada", TotalCents: 2500,
					Currency: "EUR", PaymentToken: psp.TokenOK, Items: []event.Line{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1250}}}),
				event.OrderCancelled: bustest.NewEvent(t, event.OrderCancelled, orderID, event.Cancelled{OrderID: orderID, CustomerID: "ada", Reason: event.ReasonTimeout}),
			}
			for _, typ := range order {
				if errs := s.handleBatch(ctx, []bus.Event{evs[typ]}); errs != nil {
					t.Fatalf("%s: %s: %v", name, typ, errs)
				}
			}
			var state string
			if err := db.QueryRow(ctx, "SELECT state FROM payments WHERE order_id = ?", orderID).Scan(&state); err != nil || state != stateCancelled {
				t.Errorf("%s: payment state %q (%v), want %q", name, state, err, stateCancelled)
			}
			if held, charged, ledger := holdings(t, provider, orderID); held != 0 || charged != 0 {
				t.Errorf("%s: provider holds %d, charged %d; ledger %+v", name, held, charged, ledger)
			}
		}
	})
}
