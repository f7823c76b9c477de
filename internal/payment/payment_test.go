package payment

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/psp"
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

func (g *gate) Do(ctx context.Context, op string, req psp.Request) (psp.Operation, error) {
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
			held: event.StockReserved, other: event.OrderCancelled, gateOp: psp.OpAuthorize,
			wantState: stateVoided, wantEvent: event.PaymentVoided,
		},
		{
			// A's authorization is approved; B's void undoes it; A's save
			// of "authorized" loses to B's "voided".
			name: "authorize before the cancel's void", before: []string{event.OrderPlaced},
			held: event.StockReserved, other: event.OrderCancelled, gateOp: psp.OpAuthorize, gateAfter: true,
			wantState: stateVoided, wantEvent: event.PaymentVoided,
		},
		{
			// A captures; B's void is refused (already captured); A's save
			// of "captured" loses to B's "cancelled".
			name: "capture before the cancel's void", before: []string{event.OrderPlaced, event.StockReserved},
			held: event.ShipmentCreated, other: event.OrderCancelled, gateOp: psp.OpCapture, gateAfter: true,
			wantState: stateRefunded, wantEvent: event.PaymentRefunded,
		},
		{
			// A's void finds nothing to void; then B's authorization is
			// approved and recorded first; A's save of the cancel loses.
			name: "cancel's void before an authorize recorded first", before: []string{event.OrderPlaced},
			held: event.OrderCancelled, other: event.StockReserved, gateOp: psp.OpVoid, gateAfter: true,
			wantState: stateVoided, wantEvent: event.PaymentVoided,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sqldbtest.Each(t, sets, func(t *testing.T, dsn string, dbA *sqldb.DB) {
				ctx := context.Background()
				dbB := sqldbtest.Open(t, dsn, sets...)
				pspDB := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "psp.db"), psp.Migrations())
				provider := psp.New(pspDB, psp.Config{}, log)
				mux := http.NewServeMux()
				provider.Routes(mux)
				srv := httptest.NewServer(mux)
				t.Cleanup(srv.Close)
				client := NewProviderClient(ClientConfig{BaseURL: srv.URL})
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

				ledger, err := provider.Ledger(ctx, orderID)
				if err != nil {
					t.Fatal(err)
				}
				var held, charged int64
				for _, op := range ledger {
					switch {
					case op.Op == psp.OpAuthorize && op.Outcome == psp.Approved:
						held += op.AmountCents
					case op.Op == psp.OpVoid && op.Outcome == psp.Done:
						held -= op.AmountCents
					case op.Op == psp.OpCapture && op.Outcome == psp.Done:
						held -= op.AmountCents
						charged += op.AmountCents
					case op.Op == psp.OpRefund && op.Outcome == psp.Done:
						charged -= op.AmountCents
					}
				}
				if held != 0 || charged != 0 {
					t.Errorf("provider holds %d and charged %d for the cancelled order, want 0 and 0; ledger: %+v", held, charged, ledger)
				}
				states, err := a.loadMany(ctx, []string{orderID})
				if err != nil {
					t.Fatal(err)
				}
				if p := states[orderID]; p == nil || p.state != c.wantState || !p.cancelled {
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
