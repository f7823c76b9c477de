package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq/rabbittest"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// stack is a running node and an HTTP client for it.
type stack struct {
	t   *testing.T
	n   *Node    // nil when the system runs as a separate process
	bus *bus.Bus // nil on RabbitMQ
	// broker is the system's broker, whichever the engine.
	broker bus.Broker
	base   string
}

func startStack(t *testing.T, cfg Config) *stack {
	t.Helper()
	cfg = withTestAuth(t, cfg)
	if cfg.Services == nil {
		cfg.Services = Services
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = bustest.Logger(t)
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return &stack{t: t, n: n, bus: n.Bus, broker: n.broker, base: n.URL()}
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (s *stack) do(method, path string, hdr map[string]string, body any, out any) *http.Response {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp
}

func (s *stack) addProduct(sku string, stock int) {
	s.t.Helper()
	resp := s.do("POST", "/api/products", nil, inventory.NewProduct{SKU: sku, Name: "Thing " + sku, PriceCents: 1250, Currency: "EUR", Stock: stock}, nil)
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("create product %s: %d %s", sku, resp.StatusCode, body)
	}
	if s.n == nil {
		return // out of process: placing retries until orders knows the SKU
	}
	// Orders prices from its own read model, fed by product.updated.
	bustest.Eventually(s.t, 10*time.Second, "orders to learn "+sku, func() bool {
		var n int
		s.n.stores["orders"].db.QueryRow(context.Background(), "SELECT COUNT(*) FROM catalog WHERE sku = ?", sku).Scan(&n)
		return n == 1
	})
}

var address = event.Address{Name: "Ada Lovelace", Line1: "12 St James's Sq", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}

func orderBody(customer, token string, items ...order.ItemRequest) order.PlaceRequest {
	return order.PlaceRequest{CustomerID: customer, Items: items, PaymentToken: token, ShippingAddress: address}
}

var keySeq struct {
	sync.Mutex
	n int
}

func newKey() string {
	keySeq.Lock()
	defer keySeq.Unlock()
	keySeq.n++
	return fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), keySeq.n)
}

// place places an order and returns it; the answer must be 202.
func (s *stack) place(req order.PlaceRequest) order.Order {
	s.t.Helper()
	return s.placeWithKey(newKey(), req, http.StatusAccepted)
}

// placeWithKey places an order under key; the answer must be want.
func (s *stack) placeWithKey(key string, req order.PlaceRequest, want int) order.Order {
	s.t.Helper()
	var o order.Order
	resp := s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": key}, req, &o)
	if resp.StatusCode != want || want == http.StatusAccepted && resp.Header.Get("Location") != "/api/orders/"+o.ID {
		s.t.Fatalf("place: %d Location %q, want %d", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	return o
}

func (s *stack) get(id string) order.Order {
	s.t.Helper()
	var o order.Order
	if resp := s.do("GET", "/api/orders/"+id, nil, nil, &o); resp.StatusCode != http.StatusOK {
		s.t.Fatalf("get %s: %d", id, resp.StatusCode)
	}
	return o
}

// settle waits until every order is completed or cancelled and returns them.
func (s *stack) settle(ids []string, timeout time.Duration) map[string]order.Order {
	s.t.Helper()
	out := map[string]order.Order{}
	var open order.Order
	settled := bustest.Within(timeout, func() bool {
		for _, id := range ids {
			if o, ok := out[id]; ok && o.Terminal() {
				continue
			}
			if open = s.get(id); !open.Terminal() {
				return false
			}
			out[id] = open
		}
		return true
	})
	if !settled {
		s.t.Fatalf("timed out after %s waiting for %d orders to complete or cancel; %d did, and %s is still %s: %+v",
			timeout, len(ids), len(out), open.ID, open.Status, open.Timeline)
	}
	return out
}

// checkInvariants asserts the invariants of ARCHITECTURE.md over the whole system once it has
// settled: stock balanced and nothing left reserved, at most one capture
// per order and no net charge on a cancelled one, one notification per
// event, no dead letters, and every emitted payload valid per its schema.
func (s *stack) checkInvariants(orders map[string]order.Order) {
	s.t.Helper()
	// After a crash an event can wait out its consumer's AckWait (up to 20s)
	// before it is redelivered, so allow well beyond that.
	var ledger []inventory.Ledger
	if !bustest.Within(45*time.Second, func() bool {
		s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
		for _, l := range ledger {
			if l.Reserved != 0 {
				return false
			}
		}
		return true
	}) {
		s.t.Fatalf("stock still reserved after 45s: %+v", ledger)
	}
	for _, l := range ledger {
		if l.Received != l.Available+l.Reserved+l.Committed {
			s.t.Errorf("SKU %s unbalanced: %+v", l.SKU, l)
		}
	}
	// Payments settle after orders do (a void follows the cancel), so wait
	// for the provider's ledger to show no net charge on cancelled orders.
	var ops []pspapi.Operation
	var charged []string
	if !bustest.Within(45*time.Second, func() bool {
		s.do("GET", "/api/admin/psp/ledger", nil, nil, &ops)
		net := map[string]int64{}
		for _, op := range ops {
			if op.Outcome != pspapi.OutcomeDone {
				continue
			}
			switch op.Op {
			case pspapi.OpCapture:
				net[op.OrderID] += op.AmountCents
			case pspapi.OpRefund:
				net[op.OrderID] -= op.AmountCents
			}
		}
		charged = charged[:0]
		for id, o := range orders {
			if o.Status == order.Cancelled && net[id] != 0 {
				charged = append(charged, id)
			}
		}
		return len(charged) == 0
	}) {
		for _, id := range charged {
			var theirs []pspapi.Operation
			for _, op := range ops {
				if op.OrderID == id {
					theirs = append(theirs, op)
				}
			}
			s.t.Errorf("cancelled order %s still charged after 45s: %+v; provider: %+v", id, orders[id].Timeline, theirs)
		}
		s.t.FailNow()
	}
	captures := map[string]int{}
	for _, op := range ops {
		if op.Op == pspapi.OpCapture && op.Outcome == pspapi.OutcomeDone {
			captures[op.OrderID]++
		}
	}
	for id, o := range orders {
		if captures[id] > 1 {
			s.t.Errorf("order %s captured %d times", id, captures[id])
		}
		if o.Status == order.Completed && captures[id] != 1 {
			s.t.Errorf("completed order %s has %d captures, want 1", id, captures[id])
		}
		seen := map[string]bool{}
		for _, step := range o.Timeline {
			if seen[step.Type] {
				s.t.Errorf("order %s timeline repeats %s: %+v", id, step.Type, o.Timeline)
			}
			seen[step.Type] = true
		}
	}
	var msgs []notification.Message
	s.do("GET", "/api/admin/notifications", nil, nil, &msgs)
	perOrderType := map[string]int{}
	for _, m := range msgs {
		perOrderType[m.OrderID+" "+m.Type]++
	}
	for k, n := range perOrderType {
		if n != 1 {
			s.t.Errorf("%d notifications for %s, want 1", n, k)
		}
	}
	var broker bus.Broker = s.bus
	if s.broker != nil {
		broker = s.broker
	}
	if dls, err := broker.DeadLetters(context.Background()); err != nil || len(dls) != 0 {
		s.t.Errorf("dead letters: %v %+v", err, dls)
	}
	schemas, err := event.LoadSchemas()
	if err != nil {
		s.t.Fatal(err)
	}
	if s.bus == nil {
		return // RabbitMQ keeps no stream to read the events back from
	}
	for _, ev := range bustest.ReadStream(s.t, s.bus, bus.StreamEvents) {
		if err := schemas.Validate(ev.Type, ev.Data); err != nil {
			s.t.Errorf("contract: %s %s from %s: %v", ev.Type, ev.ID, ev.Source, err)
		}
	}
}

// onEveryBroker is eachBackend, then, when ORDERMESH_TEST_RABBITMQ is set,
// f again on RabbitMQ (a virtual host of its own) with SQLite: for the
// tests that see the system only through its API and its broker's
// dead letters.
func onEveryBroker(t *testing.T, cfg Config, f func(t *testing.T, s *stack)) {
	eachBackend(t, cfg, f)
	if rabbittest.URL() != "" {
		t.Run("rabbitmq", func(t *testing.T) {
			rq := cfg
			rq.BrokerURL = rabbittest.VHost(t)
			f(t, startStack(t, rq))
		})
	}
}

// eachBackend runs f with SQLite-backed services on embedded NATS and,
// when ORDERMESH_TEST_POSTGRES is set, again with every service on its own
// PostgreSQL schema.
func eachBackend(t *testing.T, cfg Config, f func(t *testing.T, s *stack)) {
	t.Run("sqlite", func(t *testing.T) { f(t, startStack(t, cfg)) })
	base := os.Getenv(sqldbtest.PostgresEnv)
	if base == "" {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		pg := cfg
		pg.DSNs = map[string]string{}
		for _, name := range Services {
			pg.DSNs[name] = sqldbtest.PostgresSchema(t, base)
		}
		f(t, startStack(t, pg))
	})
}

func TestOrderSaga(t *testing.T) {
	onEveryBroker(t, Config{}, testOrderSaga)
}

func testOrderSaga(t *testing.T, s *stack) {
	s.addProduct("MUG", 5)
	s.addProduct("TEA", 100)

	ok := s.place(orderBody("alice", psp.TokenOK, order.ItemRequest{SKU: "MUG", Quantity: 2}, order.ItemRequest{SKU: "TEA", Quantity: 3}))
	if ok.Status != order.Pending || ok.TotalCents != 5*1250 || ok.Currency != "EUR" || ok.Version != 1 {
		t.Fatalf("placed order = %+v", ok)
	}
	// More than there ever was: out of stock whatever order inventory
	// handles the orders in (it handles different orders in parallel).
	noStock := s.place(orderBody("bob", psp.TokenOK, order.ItemRequest{SKU: "MUG", Quantity: 6}))
	declined := s.place(orderBody("carol", psp.TokenDecline, order.ItemRequest{SKU: "TEA", Quantity: 1}))
	poor := s.place(orderBody("dave", psp.TokenInsufficientFunds, order.ItemRequest{SKU: "TEA", Quantity: 1}))

	got := s.settle([]string{ok.ID, noStock.ID, declined.ID, poor.ID}, 20*time.Second)
	want := map[string][2]string{
		ok.ID:       {order.Completed, ""},
		noStock.ID:  {order.Cancelled, event.ReasonOutOfStock},
		declined.ID: {order.Cancelled, event.ReasonPaymentDeclined},
		poor.ID:     {order.Cancelled, event.ReasonPaymentDeclined},
	}
	for id, w := range want {
		if got[id].Status != w[0] || got[id].CancelReason != w[1] {
			t.Errorf("order %s = %s/%q, want %s/%q", id, got[id].Status, got[id].CancelReason, w[0], w[1])
		}
	}
	var steps []string
	for _, st := range got[ok.ID].Timeline {
		steps = append(steps, st.Type)
	}
	if strings.Join(steps, ",") != "order.placed,order.confirmed,shipment.created,payment.captured,order.completed" {
		t.Errorf("timeline of the completed order = %v", steps)
	}
	s.checkInvariants(got)

	var ledger []inventory.Ledger
	s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
	for _, l := range ledger {
		if l.SKU == "MUG" && (l.Committed != 2 || l.Available != 3) {
			t.Errorf("MUG ledger = %+v, want 2 committed, 3 available", l)
		}
	}
	// Notifications are their own consumer: the order can be completed
	// before they are all recorded.
	var msgs []notification.Message
	bustest.Eventually(t, 10*time.Second, "four notifications for the completed order", func() bool {
		s.do("GET", "/api/admin/notifications?order_id="+ok.ID, nil, nil, &msgs)
		return len(msgs) >= 4
	})
	if len(msgs) != 4 {
		t.Errorf("%d notifications for the completed order, want placed, confirmed, shipped, completed: %+v", len(msgs), msgs)
	}
	if resp := s.do("POST", "/api/orders/"+ok.ID+"/cancel", nil, nil, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("cancel of a completed order = %d, want 409", resp.StatusCode)
	}
}

func TestOversell(t *testing.T) {
	onEveryBroker(t, Config{}, testOversell)
}

func testOversell(t *testing.T, s *stack) {
	s.addProduct("LIMITED", 10)
	ids := make([]string, 50)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = s.place(orderBody(fmt.Sprintf("c%d", i), psp.TokenOK, order.ItemRequest{SKU: "LIMITED", Quantity: 1})).ID
		}()
	}
	wg.Wait()
	got := s.settle(ids, 30*time.Second)
	completed, outOfStock := 0, 0
	for _, o := range got {
		switch {
		case o.Status == order.Completed:
			completed++
		case o.Status == order.Cancelled && o.CancelReason == event.ReasonOutOfStock:
			outOfStock++
		default:
			t.Errorf("order %s ended %s/%s", o.ID, o.Status, o.CancelReason)
		}
	}
	if completed != 10 || outOfStock != 40 {
		t.Fatalf("%d completed, %d cancelled out_of_stock; want 10 and 40", completed, outOfStock)
	}
	s.checkInvariants(got)
}

func TestProviderFaults(t *testing.T) {
	onEveryBroker(t, Config{PSP: psp.Config{Faults: psp.Faults{ErrorRate: 0.3, TimeoutRate: 0.15, Hang: 2500 * time.Millisecond}}}, testProviderFaults)
}

func testProviderFaults(t *testing.T, s *stack) {
	s.addProduct("WIDGET", 1000)
	var ids []string
	for i := range 30 {
		token := psp.TokenOK
		if i%5 == 4 {
			token = psp.TokenDecline
		}
		ids = append(ids, s.place(orderBody(fmt.Sprintf("c%d", i), token, order.ItemRequest{SKU: "WIDGET", Quantity: 1})).ID)
	}
	got := s.settle(ids, 60*time.Second)
	for _, o := range got {
		if o.Status == order.Cancelled && o.CancelReason != event.ReasonPaymentDeclined && o.CancelReason != event.ReasonTimeout {
			t.Errorf("order %s cancelled for %s", o.ID, o.CancelReason)
		}
	}
	s.checkInvariants(got)
}

func TestCustomerCancelAndDeadline(t *testing.T) {
	// A slow provider keeps orders pending long enough to cancel them, and
	// past a short deadline.
	onEveryBroker(t, Config{PSP: psp.Config{Faults: psp.Faults{Latency: 1500 * time.Millisecond}}, Orders: order.Config{Deadline: time.Second}}, testCancelAndDeadline)
}

func testCancelAndDeadline(t *testing.T, s *stack) {
	s.addProduct("SLOW", 10)
	cancelled := s.place(orderBody("erin", psp.TokenOK, order.ItemRequest{SKU: "SLOW", Quantity: 2}))
	var c order.Order
	if resp := s.do("POST", "/api/orders/"+cancelled.ID+"/cancel", nil, nil, &c); resp.StatusCode != http.StatusAccepted ||
		c.Status != order.Cancelled || c.CancelReason != event.ReasonCustomerRequest {
		t.Fatalf("cancel = %d %+v", resp.StatusCode, c)
	}
	expired := s.place(orderBody("frank", psp.TokenOK, order.ItemRequest{SKU: "SLOW", Quantity: 3}))
	got := s.settle([]string{cancelled.ID, expired.ID}, 20*time.Second)
	if o := got[expired.ID]; o.Status != order.Cancelled || o.CancelReason != event.ReasonTimeout {
		t.Errorf("expired order = %s/%s, want cancelled/timeout", o.Status, o.CancelReason)
	}
	if got[cancelled.ID].CancelReason != event.ReasonCustomerRequest {
		t.Errorf("cancelled order reason = %s", got[cancelled.ID].CancelReason)
	}
	s.checkInvariants(got)
	var ledger []inventory.Ledger
	s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
	if len(ledger) != 1 || ledger[0].Available != 10 {
		t.Errorf("stock not fully released: %+v", ledger)
	}
}

// TestCatalogETag checks strong ETags on catalog reads: a matching
// If-None-Match gets 304, and a change (restock) changes the ETag.
func TestCatalogETag(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("TAGGED", 3)
	first := s.do("GET", "/api/products/TAGGED", nil, nil, nil)
	etag := first.Header.Get("ETag")
	if first.StatusCode != 200 || len(etag) < 10 || etag[0] != '"' {
		t.Fatalf("GET = %d ETag %q, want 200 with a strong ETag", first.StatusCode, etag)
	}
	if resp := s.do("GET", "/api/products/TAGGED", map[string]string{"If-None-Match": etag}, nil, nil); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current ETag = %d, want 304", resp.StatusCode)
	}
	s.do("POST", "/api/products/TAGGED/restock", nil, map[string]int{"quantity": 2}, nil)
	after := s.do("GET", "/api/products/TAGGED", map[string]string{"If-None-Match": etag}, nil, nil)
	if after.StatusCode != 200 || after.Header.Get("ETag") == etag {
		t.Fatalf("after a restock: %d ETag %q (was %q), want 200 with a new ETag", after.StatusCode, after.Header.Get("ETag"), etag)
	}
	list := s.do("GET", "/api/products", nil, nil, nil)
	if resp := s.do("GET", "/api/products", map[string]string{"If-None-Match": list.Header.Get("ETag")}, nil, nil); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("list revalidation = %d, want 304", resp.StatusCode)
	}
}

// TestRequestIDAndMetrics checks that X-Request-ID is propagated (or
// made) and that /metrics counts requests per route pattern.
func TestRequestIDAndMetrics(t *testing.T) {
	s := startStack(t, Config{MetricsAddr: "127.0.0.1:0"})
	s.addProduct("METRIC", 5)
	o := s.place(orderBody("mia", psp.TokenOK, order.ItemRequest{SKU: "METRIC", Quantity: 1}))
	s.settle([]string{o.ID}, 30*time.Second)
	if got := s.do("GET", "/api/products", map[string]string{"X-Request-ID": "req-42"}, nil, nil).Header.Get("X-Request-ID"); got != "req-42" {
		t.Fatalf("X-Request-ID = %q, want the caller's req-42", got)
	}
	if got := s.do("GET", "/api/products", nil, nil, nil).Header.Get("X-Request-ID"); len(got) < 16 {
		t.Fatalf("generated X-Request-ID = %q", got)
	}
	s.do("GET", "/api/orders/nope", nil, nil, nil)
	if resp := s.do("GET", "/metrics", nil, nil, nil); resp.StatusCode != 404 {
		t.Fatalf("/metrics on the API listener = %d, want 404 (it has its own listener)", resp.StatusCode)
	}
	resp, err := http.Get(s.n.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`ordermesh_http_requests_total{code="200",method="GET",route="GET /api/products"} 2`,
		`ordermesh_http_requests_total{code="404",method="GET",route="GET /api/orders/{id}"} 1`,
		`ordermesh_http_request_duration_seconds_bucket`,
		`go_goroutines`,
		// The pipeline: per consumer, by event type and outcome, and lag.
		`ordermesh_consumer_events_total{consumer="orders-saga",outcome="ok",type="payment.authorized"} 1`,
		`ordermesh_consumer_handle_seconds_bucket{consumer="inventory-saga",type="order.placed"`,
		`ordermesh_consumer_pending{consumer="payments-saga"} 0`,
		`ordermesh_consumer_ack_pending{consumer="shipping-saga"}`,
		`ordermesh_dlq_depth 0`,
		`ordermesh_outbox_oldest_unsent_seconds{service="orders"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestCORSAllowList(t *testing.T) {
	s := startStack(t, Config{CORSOrigins: []string{"https://shop.example"}})
	pre := s.do("OPTIONS", "/api/orders", map[string]string{"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}, nil, nil)
	if pre.StatusCode != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
		t.Fatalf("preflight from an allowed origin = %d %v", pre.StatusCode, pre.Header)
	}
	if got := s.do("GET", "/api/products", map[string]string{"Origin": "https://evil.example"}, nil, nil).Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("another origin got Access-Control-Allow-Origin %q", got)
	}
}
