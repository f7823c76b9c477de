package app

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq/rabbittest"
)

// TestRabbitMQRestartUnderLoad stops the RabbitMQ server while orders
// keep coming, waits until the node sees it gone, and starts it again:
// every accepted order ends completed or cancelled, with every invariant
// holding. Orders are accepted during the outage (their events wait in the
// outboxes).
func TestRabbitMQRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops a RabbitMQ server of its own")
	}
	port, _ := strconv.Atoi(freeAddr(t)[len("127.0.0.1:"):])
	node := rabbittest.StartNode(t, port)
	s := startStack(t, Config{BrokerURL: node.URL})
	s.addProduct("RESTART-A", 300)
	s.addProduct("RESTART-B", 60)

	load := startPacedLoad(s.base, "restart", [2]string{"RESTART-A", "RESTART-B"}, 300, 8, 40)
	bustest.Eventually(t, 60*time.Second, "100 orders accepted", func() bool { return len(load.Accepted()) >= 100 })
	stopped := time.Now()
	node.Stop()
	bustest.Eventually(t, 30*time.Second, "the node to see the broker gone", func() bool { return !s.ready() })
	t.Logf("RabbitMQ stopped after %d accepted orders", len(load.Accepted()))
	bustest.Eventually(t, 60*time.Second, "orders accepted during the outage", func() bool { return len(load.Accepted()) >= 150 })
	node.Start()
	started := time.Now()
	bustest.Eventually(t, 60*time.Second, "the node to reconnect", s.ready)
	t.Logf("outage %.1fs; the node was ready again %.1fs after the broker", started.Sub(stopped).Seconds(), time.Since(started).Seconds())
	load.Wait()
	got := s.settle(load.Accepted(), 120*time.Second)
	t.Logf("all %d accepted orders settled %.1fs after the broker came back", len(got), time.Since(started).Seconds())
	s.checkInvariants(got)
}

// TestPoisonOnRabbitMQIsDeadLetteredAndReplayed publishes an event that
// breaks its contract: it lands in the DLQ with the reason, changes
// nothing, and a replay sends it back to its consumer alone (which
// refuses it again: a new dead letter).
func TestPoisonOnRabbitMQIsDeadLetteredAndReplayed(t *testing.T) {
	s := startStack(t, Config{BrokerURL: rabbittest.VHost(t)})
	poison, err := bus.NewEvent(event.ProductUpdated, "inventory", "NOPE", map[string]any{"sku": 42})
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.broker.PublishAsync([]bus.Event{poison}).Wait(context.Background()); errs != nil {
		t.Fatal(errs)
	}
	var first bus.DeadLetter
	bustest.Eventually(t, 20*time.Second, "the poison event in the DLQ", func() bool {
		dls, _ := s.broker.DeadLetters(context.Background())
		for _, dl := range dls {
			if dl.EventID == poison.ID {
				first = dl
				return true
			}
		}
		return false
	})
	if first.Consumer == "" || first.Error == "" {
		t.Fatalf("dead letter %+v: want its consumer and the reason", first)
	}
	if resp := s.do("POST", "/api/admin/dlq/"+strconv.FormatUint(first.ID, 10)+"/replay", nil, nil, nil); resp.StatusCode >= 300 {
		t.Fatalf("replay = %d", resp.StatusCode)
	}
	bustest.Eventually(t, 20*time.Second, "the replayed event dead-lettered again, under a new id", func() bool {
		dls, _ := s.broker.DeadLetters(context.Background())
		again := false
		for _, dl := range dls {
			if dl.ID == first.ID {
				return false
			}
			again = again || (dl.EventID == poison.ID && dl.Consumer == first.Consumer)
		}
		return again
	})
}

// ready reports whether the node's /readyz answers 200.
func (s *stack) ready() bool {
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
