package app

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

func startNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Start(context.Background(), Config{Services: Services, Addr: "127.0.0.1:0", DataDir: dir, Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func readyz(t *testing.T, n *Node) map[string]string {
	t.Helper()
	resp, err := http.Get(n.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var checks map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&checks); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz = %d %v", resp.StatusCode, checks)
	}
	return checks
}

func streamHas(t *testing.T, n *Node, id string) bool {
	t.Helper()
	st, err := n.Bus.JetStream().Stream(context.Background(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(context.Background(), seq)
		if err == nil && raw.Header.Get(bus.HeaderID) == id {
			return true
		}
	}
	return false
}

// TestNodeRelaysAndSurvivesRestart starts the embedded node, commits an
// event through a service's outbox, and checks that the node relays it,
// reports ready, and still has it after a restart on the same data dir.
func TestNodeRelaysAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	if checks := readyz(t, n); checks["orders_db"] != "ok" || checks["nats"] != "ok" || checks["orders_outbox"] != "ok" {
		t.Fatalf("readyz checks = %v", checks)
	}
	line := []event.Line{{SKU: "NODE", Quantity: 1, UnitPriceCents: 1200}}
	ev, err := bus.NewEvent(event.OrderPlaced, event.Source("orders"), "order-1", event.Placed{OrderID: "order-1", CustomerID: "c", Items: line,
		TotalCents: 1200, Currency: "EUR", PaymentToken: "tok_ok", ShippingAddress: address})
	if err != nil {
		t.Fatal(err)
	}
	st := n.stores["orders"]
	err = st.db.InTx(context.Background(), func(tx *sqldb.Tx) error { return st.outbox.Add(context.Background(), tx, ev) })
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, "the event relayed", func() bool { return streamHas(t, n, ev.ID) })

	// A consumer on the node reacts with an event of its own through the
	// outbox, in the same transaction as its inbox record.
	reacted := make(chan string, 1)
	err = n.ConsumeBatch(context.Background(), bus.ConsumerConfig{Name: "inventory-reserve", Types: []string{"order.placed"}},
		inbox.BatchHandler(n.stores["inventory"].db, "inventory-reserve", func(ctx context.Context, tx *sqldb.Tx, in bus.Event) error {
			out, err := bus.NewEvent(event.StockReserved, event.Source("inventory"), in.Subject, event.Reserved{OrderID: in.Subject, Items: line})
			if err != nil {
				return err
			}
			out = out.CausedBy(in)
			select {
			case reacted <- out.ID:
			default:
			}
			return n.stores["inventory"].outbox.Add(ctx, tx, out)
		}))
	if err != nil {
		t.Fatal(err)
	}
	var reaction string
	select {
	case reaction = <-reacted:
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer never reacted")
	}
	bustest.Eventually(t, 10*time.Second, "the reaction relayed", func() bool { return streamHas(t, n, reaction) })
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	n = startNode(t, dir)
	readyz(t, n)
	if !streamHas(t, n, ev.ID) || !streamHas(t, n, reaction) {
		t.Fatal("events are gone after a restart")
	}
}
