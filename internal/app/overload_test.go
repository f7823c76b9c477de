package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// TestOverloadRefusesNewOrdersInsteadOfLosingThem: while more than 100
// accepted orders have waited longer than --order-max-wait (here the
// provider answers slower than payments waits, so none can move on), a
// new order is refused with 503 and Retry-After, and the key stays free;
// a retried request of an accepted order is still answered as before.
// Once the backlog is gone, the same request is accepted.
func TestOverloadRefusesNewOrdersInsteadOfLosingThem(t *testing.T) {
	s := startStack(t, Config{
		Orders: order.Config{Deadline: 8 * time.Second, MaxWait: time.Second},
		PSP:    psp.Config{Faults: psp.Faults{Latency: 3 * time.Second}},
	})
	s.addProduct("SHED", 500)
	body := orderBody("ivy", psp.TokenOK, order.ItemRequest{SKU: "SHED", Quantity: 1})
	firstKey := newKey()
	first := s.placeWithKey(firstKey, body, http.StatusAccepted)
	ids := []string{first.ID}
	for range 110 {
		ids = append(ids, s.place(body).ID)
	}
	var key string
	var resp *http.Response
	bustest.Eventually(t, 10*time.Second, "a new order refused while 111 wait", func() bool {
		key = newKey()
		resp = s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": key}, body, nil)
		if resp.StatusCode == http.StatusAccepted { // not yet waiting long enough: one more waits
			var o order.Order
			s.do("GET", resp.Header.Get("Location"), nil, nil, &o)
			ids = append(ids, o.ID)
		}
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp.Header.Get("Retry-After") == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("the refusal has Retry-After %q and Content-Type %q", resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}
	replay := s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": firstKey}, body, nil)
	if replay.StatusCode != http.StatusAccepted || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a retried accepted order while overloaded = %d replayed %q, want its 202", replay.StatusCode, replay.Header.Get("Idempotent-Replayed"))
	}
	s.settle(ids, 30*time.Second) // every accepted order times out: the provider never answers in time
	bustest.Eventually(t, 10*time.Second, "the refused order accepted once the backlog is gone", func() bool {
		return s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": key}, body, nil).StatusCode == http.StatusAccepted
	})
}
