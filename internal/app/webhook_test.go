package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// receiver is a merchant's endpoint in the test. It verifies every
// delivery with the official Standard Webhooks library, never with
// ordermesh's own signing code, and answers with respond.
type receiver struct {
	t       *testing.T
	mu      sync.Mutex
	secrets []string
	got     map[string]int // webhook-id → deliveries received and verified
	bad     []string
	respond func(id string, n int) int
	// retryAfter, if set, is sent as Retry-After with every answer.
	retryAfter string
	srv        *httptest.Server
}

func newReceiver(t *testing.T, respond func(id string, n int) int) *receiver {
	return newReceiverWith(t, "", respond)
}

func newReceiverWith(t *testing.T, retryAfter string, respond func(id string, n int) int) *receiver {
	r := &receiver{t: t, got: map[string]int{}, respond: respond, retryAfter: retryAfter}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	secrets := append([]string(nil), r.secrets...)
	r.mu.Unlock()
	verified := len(secrets) > 0
	for _, secret := range secrets {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil || wh.Verify(body, req.Header) != nil {
			verified = false
		}
	}
	r.mu.Lock()
	if !verified {
		r.bad = append(r.bad, id)
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got[id]++
	n := r.got[id]
	r.mu.Unlock()
	status := http.StatusOK
	if r.respond != nil {
		status = r.respond(id, n)
	}
	if r.retryAfter != "" {
		w.Header().Set("Retry-After", r.retryAfter)
	}
	w.WriteHeader(status)
}

func (r *receiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *receiver) ids() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.got {
		out[k] = v
	}
	return out
}

func (s *stack) subscribe(r *receiver, types ...string) webhook.Endpoint {
	s.t.Helper()
	var e webhook.Endpoint
	resp := s.do("POST", "/api/webhooks/endpoints", nil, map[string]any{"url": r.srv.URL, "event_types": types, "description": "test"}, &e)
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(e.Secret, "whsec_") {
		s.t.Fatalf("create endpoint: %d %+v", resp.StatusCode, e)
	}
	r.mu.Lock()
	r.secrets = []string{e.Secret}
	r.mu.Unlock()
	return e
}

var testSchedule = []time.Duration{0, 300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond, time.Second}

func webhookStack(t *testing.T) *stack {
	return startStack(t, Config{Webhooks: webhook.Config{AllowPrivate: true, Schedule: testSchedule}})
}

// productEvent creates a product and returns the id of the
// product.updated event it caused.
func (s *stack) productEvent(sku string) string {
	s.t.Helper()
	s.do("POST", "/api/products", nil, inventory.NewProduct{SKU: sku, Name: sku, PriceCents: 100, Currency: "EUR", Stock: 1}, nil)
	var id string
	bustest.Eventually(s.t, 10*time.Second, "product.updated for "+sku, func() bool {
		for _, ev := range bustest.ReadStream(s.t, s.bus, bus.StreamEvents) {
			if ev.Type == event.ProductUpdated && ev.Subject == sku {
				id = ev.ID
				return true
			}
		}
		return false
	})
	return id
}

func TestWebhookRetriesOnSchedule(t *testing.T) {
	s := webhookStack(t)
	r := newReceiver(t, func(_ string, n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	e := s.subscribe(r, event.ProductUpdated)
	id := s.productEvent("HOOK-1")
	bustest.Eventually(t, 15*time.Second, "the fourth attempt to succeed", func() bool { return r.count(id) == 4 })

	var ds []webhook.Delivery
	bustest.Eventually(t, 5*time.Second, "the delivery marked delivered", func() bool {
		s.do("GET", "/api/webhooks/deliveries?endpoint_id="+e.ID, nil, nil, &ds)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	as := ds[0].Attempts
	if len(as) != 4 || as[0].StatusCode != 500 || as[3].StatusCode != 200 || ds[0].EventID != id {
		t.Fatalf("attempt log = %+v", as)
	}
	// Never early: at least the schedule's delay less its 20% jitter. How
	// late it may be depends on the machine, so the schedule's upper bound
	// is checked on the service's own clock, in webhook's TestRetrySchedule.
	for i := 1; i < 4; i++ {
		if gap, want := as[i].At.Sub(as[i-1].At), testSchedule[i]; gap < want*8/10 {
			t.Errorf("attempt %d came %s after the previous, before %s less 20%%", i+1, gap, want)
		}
	}
	if len(r.bad) != 0 {
		t.Fatalf("deliveries that failed verification: %v", r.bad)
	}
}

func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	s := webhookStack(t)
	release := make(chan struct{})
	slow := newReceiver(t, func(string, int) int {
		<-release
		return http.StatusOK
	})
	// Registered after the receiver's, so it runs first and the server's
	// Close does not wait on the hanging requests.
	t.Cleanup(func() { close(release) })
	healthy := newReceiver(t, nil)
	s.subscribe(slow, event.ProductUpdated)
	s.subscribe(healthy, event.ProductUpdated)
	var ids []string
	for i := range 10 {
		ids = append(ids, s.productEvent(fmt.Sprintf("SLOW-%d", i)))
	}
	// The slow endpoint hangs until the test ends, so whatever the healthy
	// one gets, it gets while the slow one still hangs.
	bustest.Eventually(t, 30*time.Second, "every delivery to the healthy endpoint while the slow one still hangs", func() bool {
		for _, id := range ids {
			if healthy.count(id) == 0 {
				return false
			}
		}
		return true
	})
}

func TestWebhookEndpoints(t *testing.T) {
	s := webhookStack(t)
	r := newReceiver(t, nil)
	e := s.subscribe(r, event.ProductUpdated)
	t.Run("Validation", func(t *testing.T) {
		for _, c := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"url": "ftp://x", "event_types": []string{"order.placed"}}, "url"},
			{map[string]any{"url": "https://shop.example/h", "event_types": []string{"order.teleported"}}, "event_types[0]"},
			{map[string]any{"url": "https://shop.example/h", "event_types": []string{}}, "event_types"},
			{map[string]any{"event_types": []string{"order.placed"}}, "url"},
		} {
			var p httpx.Problem
			if resp := s.do("POST", "/api/webhooks/endpoints", nil, c.body, &p); resp.StatusCode != 400 || p.Field != c.field {
				t.Errorf("%v = %d %+v, want 400 naming %s", c.body, resp.StatusCode, p, c.field)
			}
		}
	})
	t.Run("RotateSecretSignsWithBoth", func(t *testing.T) {
		var rotated webhook.Endpoint
		s.do("POST", "/api/webhooks/endpoints/"+e.ID+"/rotate-secret", nil, nil, &rotated)
		if rotated.Secret == e.Secret || !strings.HasPrefix(rotated.Secret, "whsec_") {
			t.Fatalf("rotated secret = %q", rotated.Secret)
		}
		// The receiver now insists that both the old and the new secret verify.
		r.mu.Lock()
		r.secrets = []string{e.Secret, rotated.Secret}
		r.mu.Unlock()
		id := s.productEvent("ROTATED")
		bustest.Eventually(t, 10*time.Second, "a delivery verified with both secrets", func() bool { return r.count(id) == 1 })
	})
	t.Run("GoneDisables", func(t *testing.T) {
		gone := newReceiver(t, func(string, int) int { return http.StatusGone })
		g := s.subscribe(gone, event.ProductUpdated)
		s.productEvent("GONE")
		var got webhook.Endpoint
		bustest.Eventually(t, 10*time.Second, "the endpoint disabled", func() bool {
			s.do("GET", "/api/webhooks/endpoints/"+g.ID, nil, nil, &got)
			return got.Disabled
		})
		bustest.Eventually(t, 10*time.Second, "endpoint.disabled emitted", func() bool {
			for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
				if ev.Type == event.EndpointDisabled && ev.Subject == g.ID {
					return true
				}
			}
			return false
		})
	})
}

// TestPrivateAddressesRefused checks the default guard: an endpoint on a
// loopback IP literal is refused at creation.
func TestPrivateAddressesRefused(t *testing.T) {
	s := startStack(t, Config{})
	var p httpx.Problem
	resp := s.do("POST", "/api/webhooks/endpoints", nil, map[string]any{"url": "http://127.0.0.1:9/h", "event_types": []string{"order.placed"}}, &p)
	if resp.StatusCode != 400 || p.Field != "url" {
		t.Fatalf("loopback endpoint = %d %+v, want 400 naming url", resp.StatusCode, p)
	}
}

// TestWebhooksSurviveKill kills the real binary with SIGKILL during a burst
// of deliveries and restarts it: every event is delivered at least once,
// and a repeat carries the same webhook-id.
func TestWebhooksSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	p := &process{t: t, bin: buildBinary(t), data: t.TempDir(), addr: freeAddr(t), nats: freeAddr(t),
		extra: []string{"--webhook-allow-private", "--webhook-schedule", "0s,200ms,500ms,1s,2s,5s"}}
	p.start()
	defer p.kill()
	s := &stack{t: t, base: "http://" + p.addr}
	r := newReceiver(t, nil)
	s.subscribe(r, event.ProductUpdated)

	const products = 150
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < products; i += 6 {
				body := inventory.NewProduct{SKU: fmt.Sprintf("BURST-%d", i), Name: "burst", PriceCents: 1, Currency: "EUR", Stock: 1}
				for {
					raw, _ := json.Marshal(body)
					resp, err := http.Post(s.base+"/api/products", "application/json", bytes.NewReader(raw))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusConflict {
							break
						}
					}
					time.Sleep(50 * time.Millisecond) // the process is restarting
				}
			}
		}()
	}
	target := 20 + rand.IntN(60)
	bustest.Eventually(t, 30*time.Second, fmt.Sprintf("%d deliveries", target), func() bool { return len(r.ids()) >= target })
	p.kill()
	t.Logf("killed ordermesh after %d deliveries", len(r.ids()))
	p.start()
	wg.Wait()

	nc, err := bus.Dial(t.Context(), p.natsURL(), "webhook-crash-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// A product committed just before the kill has its event in the outbox
	// until the restarted relay publishes it.
	want := map[string]bool{}
	bustest.Eventually(t, 30*time.Second, fmt.Sprintf("%d product.updated events", products), func() bool {
		want = map[string]bool{}
		for _, ev := range bustest.ReadStream(t, b, bus.StreamEvents) {
			if ev.Type == event.ProductUpdated {
				want[ev.ID] = true
			}
		}
		return len(want) == products
	})
	bustest.Eventually(t, 60*time.Second, "every event delivered", func() bool {
		got := r.ids()
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	repeats := 0
	for id, n := range r.ids() {
		if !want[id] {
			t.Errorf("delivery with webhook-id %s, which is no product.updated event id", id)
		}
		if n > 1 {
			repeats++
		}
	}
	t.Logf("%d events delivered, %d of them more than once (same webhook-id)", len(want), repeats)
	if len(r.bad) != 0 {
		t.Fatalf("deliveries that failed verification: %v", r.bad)
	}
}

// TestWebhookRetryAfterRetryAndRecover checks that a 429's Retry-After
// sets the next attempt, and that a failed delivery can be re-sent one by
// one (retry) or all since a time (recover).
func TestWebhookRetryAfterRetryAndRecover(t *testing.T) {
	s := startStack(t, Config{Webhooks: webhook.Config{AllowPrivate: true, Schedule: []time.Duration{0, 100 * time.Millisecond}}})
	var mu sync.Mutex
	mode := "throttle"
	r := newReceiverWith(t, "2", func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		switch mode {
		case "throttle":
			return http.StatusTooManyRequests
		case "down":
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	e := s.subscribe(r, event.ProductUpdated)
	start := time.Now()
	s.productEvent("THROTTLED")
	var ds []webhook.Delivery
	bustest.Eventually(t, 10*time.Second, "two attempts", func() bool {
		s.do("GET", "/api/webhooks/deliveries?endpoint_id="+e.ID, nil, nil, &ds)
		return len(ds) == 1 && len(ds[0].Attempts) == 2
	})
	if gap := ds[0].Attempts[1].At.Sub(ds[0].Attempts[0].At); gap < 1900*time.Millisecond {
		t.Errorf("second attempt %s after the first, want Retry-After's 2s (the schedule said 100ms)", gap)
	}
	if ds[0].Status != "failed" {
		t.Fatalf("delivery = %s after its schedule ran out, want failed (started %s ago)", ds[0].Status, time.Since(start))
	}

	mu.Lock()
	mode = "ok"
	mu.Unlock()
	if resp := s.do("POST", "/api/webhooks/deliveries/"+ds[0].ID+"/retry", nil, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("retry = %d", resp.StatusCode)
	}
	bustest.Eventually(t, 10*time.Second, "the retried delivery delivered", func() bool {
		var one []webhook.Delivery
		s.do("GET", "/api/webhooks/deliveries?status=delivered&endpoint_id="+e.ID, nil, nil, &one)
		return len(one) == 1
	})
	if resp := s.do("POST", "/api/webhooks/deliveries/"+ds[0].ID+"/retry", nil, nil, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("retry of a delivered delivery = %d, want 409", resp.StatusCode)
	}

	mu.Lock()
	mode = "down"
	mu.Unlock()
	since := time.Now().UTC().Add(-time.Second)
	for _, sku := range []string{"DOWN-1", "DOWN-2"} {
		s.productEvent(sku)
	}
	bustest.Eventually(t, 10*time.Second, "two failed deliveries", func() bool {
		var failed []webhook.Delivery
		s.do("GET", "/api/webhooks/deliveries?status=failed&endpoint_id="+e.ID, nil, nil, &failed)
		return len(failed) == 2
	})
	mu.Lock()
	mode = "ok"
	mu.Unlock()
	var rec map[string]int
	if resp := s.do("POST", "/api/webhooks/endpoints/"+e.ID+"/recover?since="+since.Format(time.RFC3339), nil, nil, &rec); resp.StatusCode != http.StatusAccepted || rec["recovered"] != 2 {
		t.Fatalf("recover = %d %v, want 2 recovered", resp.StatusCode, rec)
	}
	bustest.Eventually(t, 10*time.Second, "the recovered deliveries delivered", func() bool {
		var delivered []webhook.Delivery
		s.do("GET", "/api/webhooks/deliveries?status=delivered&endpoint_id="+e.ID, nil, nil, &delivered)
		return len(delivered) == 3
	})
	if resp := s.do("POST", "/api/webhooks/endpoints/"+e.ID+"/recover?since=yesterday", nil, nil, nil); resp.StatusCode != 400 {
		t.Errorf("recover with a bad since = %d, want 400", resp.StatusCode)
	}

	// An order's page asks for the deliveries of its events by id.
	var one []webhook.Delivery
	s.do("GET", "/api/webhooks/deliveries?event_id="+ds[0].EventID+",no-such-event", nil, nil, &one)
	if len(one) != 1 || one[0].ID != ds[0].ID {
		t.Errorf("deliveries?event_id= = %+v, want the one delivery of %s", one, ds[0].EventID)
	}
	if resp := s.do("GET", "/api/webhooks/deliveries?event_id="+strings.Repeat("x,", 100)+"x", nil, nil, nil); resp.StatusCode != 400 {
		t.Errorf("deliveries with 101 event ids = %d, want 400", resp.StatusCode)
	}
	var listed []webhook.Endpoint
	if s.do("GET", "/api/webhooks/endpoints", nil, nil, &listed); len(listed) != 1 || listed[0].Breaker != "closed" {
		t.Errorf("endpoints = %+v, want one with its breaker closed", listed)
	}
}

// TestWebhookConsumerFollowsTheEndpoints: with no endpoint the webhooks
// consumer is delivered nothing at all (an order costs it no delivery);
// an endpoint's types are added before it is stored, so its first event
// arrives; deleting it takes them away again.
func TestWebhookConsumerFollowsTheEndpoints(t *testing.T) {
	s := webhookStack(t)
	ctx := context.Background()
	delivered := func() uint64 {
		cons, err := s.bus.JetStream().Consumer(ctx, bus.StreamEvents, webhook.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Delivered.Consumer
	}
	s.addProduct("QUIET", 10)
	o := s.place(orderBody("gus", psp.TokenOK, order.ItemRequest{SKU: "QUIET", Quantity: 1}))
	s.settle([]string{o.ID}, 30*time.Second)
	if n := delivered(); n != 0 {
		t.Fatalf("with no endpoint the webhooks consumer was delivered %d events, want none", n)
	}
	r := newReceiver(t, func(string, int) int { return 200 })
	e := s.subscribe(r, event.ProductUpdated)
	id := s.productEvent("LOUD")
	bustest.Eventually(t, 20*time.Second, "the new endpoint's first event", func() bool { return r.count(id) == 1 })
	if resp := s.do("DELETE", "/api/webhooks/endpoints/"+e.ID, nil, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete endpoint = %d", resp.StatusCode)
	}
	before := delivered()
	s.productEvent("QUIET2")
	o = s.place(orderBody("gus", psp.TokenOK, order.ItemRequest{SKU: "QUIET", Quantity: 1}))
	s.settle([]string{o.ID}, 30*time.Second)
	if n := delivered(); n != before {
		t.Fatalf("after the endpoint was deleted the consumer was delivered %d more events, want none", n-before)
	}
}
