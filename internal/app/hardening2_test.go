package app

// Tests for the second hardening round: each asserts what a hostile client
// or a compromised service gets, and that nothing changed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// TestSmuggledRequestsGetOneAnswer: a request framed both by
// Content-Length and Transfer-Encoding (either way round), or with an odd
// Transfer-Encoding, gets one 400 and the connection closes; the request
// smuggled behind it is never answered.
func TestSmuggledRequestsGetOneAnswer(t *testing.T) {
	s := startStack(t, Config{})
	host := strings.TrimPrefix(s.base, "http://")
	smuggled := "GET /api/admin/dlq HTTP/1.1\r\nHost: x\r\n\r\n"
	for name, raw := range map[string]string{
		"CL.TE": "POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"TE.CL": "POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
			"5c\r\n" + smuggled + strings.Repeat("x", 92-len(smuggled)) + "\r\n0\r\n\r\n",
		"TE-tab": "POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled,
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if second, err := http.ReadResponse(br, nil); err == nil {
				t.Fatalf("a second answer on the same connection: %s (the smuggled request was served)", second.Status)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection stayed open after the 400")
			}
		})
	}
}

// TestPaymentTokenStaysInPayments: the card's token is sealed to payments
// before it leaves orders: no event, header, webhook payload or orders
// row holds it, and payments still charges the card.
func TestPaymentTokenStaysInPayments(t *testing.T) {
	s := webhookStack(t)
	rcv := newReceiver(t, nil)
	s.subscribe(rcv, event.OrderPlaced, event.OrderCompleted)
	s.addProduct("SEALED", 5)
	const token = "tok_ok"
	o := s.place(orderBody("ada", token, order.ItemRequest{SKU: "SEALED", Quantity: 1}))
	if got := s.settle([]string{o.ID}, 30*time.Second)[o.ID]; got.Status != order.Completed {
		t.Fatalf("order %s, want completed: payments could not use the sealed token", got.Status)
	}
	for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
		if strings.Contains(string(ev.Data), token) || strings.Contains(string(ev.Data), "payment_token") {
			t.Errorf("%s carries the payment token: %s", ev.Type, ev.Data)
		}
		if ev.Type == event.OrderPlaced {
			var d event.Placed
			json.Unmarshal(ev.Data, &d)
			if !strings.HasPrefix(d.PaymentMethod, "hpke1.") {
				t.Errorf("order.placed's payment_method %q is not sealed", d.PaymentMethod)
			}
		}
	}
	ctx := context.Background()
	var clear int
	s.n.stores["orders"].db.QueryRow(ctx, "SELECT COUNT(*) FROM orders WHERE payment_token <> ''").Scan(&clear)
	if clear != 0 {
		t.Errorf("orders stores %d payment tokens", clear)
	}
	bustest.Eventually(t, 10*time.Second, "the order.placed webhook delivered", func() bool { return len(rcv.ids()) == 2 })
	rows, err := s.n.stores["notifications"].db.Query(ctx, "SELECT payload FROM webhook_deliveries")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var payload string
		rows.Scan(&payload)
		if strings.Contains(payload, "payment_") || strings.Contains(payload, token) {
			t.Errorf("a merchant webhook carries the payment method: %s", payload)
		}
	}
}

// TestReplayedEventsNotifyOnce: a copy of a customer-facing event under a
// fresh id (a replay, a forgery) sends the customer no second message and
// the merchant no second webhook.
func TestReplayedEventsNotifyOnce(t *testing.T) {
	s := webhookStack(t)
	rcv := newReceiver(t, nil)
	types := []string{event.OrderPlaced, event.OrderConfirmed, event.ShipmentCreated, event.OrderCompleted}
	s.subscribe(rcv, types...)
	s.addProduct("ONCE", 5)
	o := s.place(orderBody("ada", psp.TokenOK, order.ItemRequest{SKU: "ONCE", Quantity: 1}))
	s.settle([]string{o.ID}, 30*time.Second)
	ctx := context.Background()
	var last uint64
	for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
		if ev.Subject != o.ID || !slices.Contains(types, ev.Type) {
			continue
		}
		copied := ev
		copied.ID = uuid.NewString()
		if err := s.bus.Publish(ctx, copied); err != nil {
			t.Fatal(err)
		}
		seq, err := s.bus.LastSequence(ctx, ev.Type, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, seq)
	}
	for _, consumer := range []string{notification.ConsumerName, webhook.ConsumerName} {
		bustest.Eventually(t, 20*time.Second, consumer+" to handle the copies", func() bool {
			ok, _ := s.bus.AckedThrough(ctx, consumer, o.ID, last)
			return ok
		})
	}
	var msgs []notification.Message
	s.do("GET", "/api/admin/notifications?order_id="+o.ID, nil, nil, &msgs)
	perType := map[string]int{}
	for _, m := range msgs {
		perType[m.Type]++
	}
	var deliveries int
	s.n.stores["notifications"].db.QueryRow(ctx, "SELECT COUNT(*) FROM webhook_deliveries").Scan(&deliveries)
	for _, typ := range types {
		if typ != event.OrderCompleted && perType[typ] != 1 {
			t.Errorf("%d customer messages about %s, want 1", perType[typ], typ)
		}
	}
	if deliveries != len(types) {
		t.Errorf("%d webhook deliveries for %d event types, want one each", deliveries, len(types))
	}
	if dls := mustDeadLetters(t, s.bus); len(dls) != 0 {
		t.Errorf("dead letters: %+v", dls)
	}
}

// TestServicesSpeakOnlyForThemselves: each service has a broker identity
// of its own that may publish only its own events and may not touch the
// pipeline's streams; and an event whose source is not the service that
// owns its type is dead-lettered by every consumer, changing nothing.
func TestServicesSpeakOnlyForThemselves(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, Config{DataDir: dir, NATSListen: "127.0.0.1:0"})
	ctx := context.Background()
	pw, err := os.ReadFile(filepath.Join(dir, NATSIdentityFile("inventory")))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.n.embedded.ClientURL(), nats.UserInfo("inventory", strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("inventory's identity: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	forged := fromPublisher(bustest.NewEvent(t, event.OrderPlaced, "0190c0de-0000-7000-8000-00000000beef", map[string]any{}))
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, forged.Msg()); err == nil {
		t.Error("inventory's identity published order.placed")
	}
	own := fromPublisher(bustest.NewEvent(t, event.ProductUpdated, "OWN", map[string]any{}))
	if _, err := js.PublishMsg(ctx, own.Msg()); err != nil {
		t.Errorf("inventory's identity may not publish its own product.updated: %v", err)
	}
	for _, op := range []func(context.Context) error{
		func(ctx context.Context) error { return js.DeleteStream(ctx, bus.StreamEvents) },
		func(ctx context.Context) error {
			st, err := js.Stream(ctx, bus.StreamEvents)
			if err == nil {
				err = st.Purge(ctx)
			}
			return err
		},
		func(ctx context.Context) error {
			_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: bus.StreamEvents, Subjects: []string{"events.>"}, MaxAge: time.Second})
			return err
		},
		func(ctx context.Context) error { return js.DeleteConsumer(ctx, bus.StreamEvents, order.ConsumerName) },
	} {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := op(octx); err == nil {
			t.Error("inventory's identity changed the EVENTS stream or another service's consumer")
		}
		cancel()
	}
	if st, err := s.bus.JetStream().Stream(ctx, bus.StreamEvents); err != nil || st.CachedInfo().Config.MaxAge != bus.EventsMaxAge {
		t.Fatalf("EVENTS changed: %v", err)
	}

	// Through the administrative identity, with another service's source.
	s.addProduct("SOURCE", 5)
	id := "0190c0de-0000-7000-8000-00000000cafe"
	ev := bustest.NewEvent(t, event.OrderPlaced, id, event.Placed{OrderID: id, CustomerID: "mallory",
		Items: []event.Line{{SKU: "SOURCE", Quantity: 1, UnitPriceCents: 100}}, TotalCents: 100, Currency: "EUR",
		PaymentToken: psp.TokenOK, ShippingAddress: address})
	ev.Source = event.Source("inventory")
	if err := s.bus.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, "every consumer of order.placed to dead-letter it", func() bool {
		n := 0
		for _, dl := range mustDeadLetters(t, s.bus) {
			if dl.EventID == ev.ID && strings.Contains(dl.Error, "may only come from ordermesh/orders") {
				n++
			}
		}
		return n == 4 // orders, inventory, payments, notifications
	})
	var rows int
	s.n.stores["payments"].db.QueryRow(ctx, "SELECT COUNT(*) FROM payments WHERE order_id = ?", id).Scan(&rows)
	if rows != 0 {
		t.Error("payments acted on an order.placed from inventory")
	}
	var ledger []inventory.Ledger
	s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
	for _, l := range ledger {
		if l.SKU == "SOURCE" && l.Reserved != 0 {
			t.Error("inventory reserved stock for an order.placed from inventory")
		}
	}
}

// TestGatewayReadyOnlyWhenItCanRoute: a gateway whose upstream has not
// answered its /readyz yet says it is not ready (a rolling deploy sends it
// no traffic that could only get 502), and is ready, routing, as soon as
// the upstream is.
func TestGatewayReadyOnlyWhenItCanRoute(t *testing.T) {
	s := startStack(t, Config{NATSListen: "127.0.0.1:0"})
	var upReady atomic.Bool
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !upReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "[]")
	}))
	defer inventory.Close()
	g := s.gatewayTo(map[string][]string{"inventory": {inventory.URL}})
	var checks struct {
		Checks map[string]string `json:"checks"`
	}
	if resp := g.do("GET", "/readyz", nil, nil, &checks); resp.StatusCode != http.StatusServiceUnavailable || checks.Checks["upstream_inventory"] == "ok" {
		t.Fatalf("/readyz = %d %v before its upstream is ready, want 503 naming upstream_inventory", resp.StatusCode, checks.Checks)
	}
	upReady.Store(true)
	bustest.Eventually(t, 10*time.Second, "the gateway ready", func() bool {
		return g.do("GET", "/readyz", nil, nil, nil).StatusCode == http.StatusOK
	})
	if resp := g.do("GET", "/api/products", nil, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the first request once ready = %d, want 200", resp.StatusCode)
	}
}

// TestNullBodyNamesAField: a body that is JSON null is a 400 naming the
// first field the request needs.
func TestNullBodyNamesAField(t *testing.T) {
	s := startStack(t, Config{})
	for path, want := range map[string]string{"/api/orders": "customer_id", "/api/products": "sku", "/api/webhooks/endpoints": "url"} {
		var p httpx.Problem
		resp := s.do("POST", path, map[string]string{"Content-Type": "application/json", "Idempotency-Key": newKey()}, "null", &p)
		if resp.StatusCode != http.StatusBadRequest || p.Field != want {
			t.Errorf("POST %s null = %d, field %q (%s); want 400 naming %s", path, resp.StatusCode, p.Field, p.Detail, want)
		}
	}
}

// TestProviderSimulatorPortIsChosen: run's provider simulator listens
// where --psp-listen says, and answers only its API key there.
func TestProviderSimulatorPortIsChosen(t *testing.T) {
	addr := bustest.FreeAddr(t)
	s := startStack(t, Config{PSPListen: addr})
	if s.n.PSPURL() != "http://"+addr {
		t.Fatalf("simulator at %s, want %s", s.n.PSPURL(), addr)
	}
	resp, err := http.Post("http://"+addr+"/psp/v1/authorize", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the simulator without its API key = %d, want 401", resp.StatusCode)
	}
}

// TestConsoleSessionIsOutOfScriptsReach: the console signs in to an
// HttpOnly, SameSite=Strict cookie that authenticates its calls; a call
// that changes state also needs the session's CSRF token; its pages
// allow no inline script or style.
func TestConsoleSessionIsOutOfScriptsReach(t *testing.T) {
	s := startStack(t, Config{})
	admin := customerToken(t, "ops", "admin")
	bare := &http.Client{Transport: http.DefaultTransport} // no token of the tests' own
	post := func(path, body string, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
		req, _ := http.NewRequest("POST", s.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := bare.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := post("/console/session", `{"token":"`+customerToken(t, "ada", "orders:read")+`"}`, nil); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("a customer's sign-in = %d with %d cookies, want 403 and none", resp.StatusCode, len(resp.Cookies()))
	}
	resp := post("/console/session", `{"token":"`+admin+`"}`, nil)
	var signedIn struct{ CSRF string }
	json.NewDecoder(resp.Body).Decode(&signedIn)
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || signedIn.CSRF == "" {
		t.Fatalf("sign-in = %d, cookie %+v, csrf %q; want an HttpOnly SameSite=Strict cookie and a CSRF token", resp.StatusCode, cookie, signedIn.CSRF)
	}
	get, _ := http.NewRequest("GET", s.base+"/api/admin/health", nil)
	get.AddCookie(cookie)
	if resp, err := bare.Do(get); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a read with the session = %v %v, want 200", resp.StatusCode, err)
	}
	if resp := post("/api/admin/dlq/replay", `{}`, nil, cookie); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a state-changing call without the CSRF token = %d, want 403", resp.StatusCode)
	}
	if resp := post("/api/admin/dlq/replay", `{}`, map[string]string{csrfHeader: signedIn.CSRF}, cookie); resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
		t.Fatalf("a state-changing call with the CSRF token = %d", resp.StatusCode)
	}
	page := s.do("GET", "/console/", nil, nil, nil)
	if csp := page.Header.Get("Content-Security-Policy"); csp == "" || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("the console's Content-Security-Policy = %q", csp)
	}
	// Guessing tokens at the sign-in meets the failed-authentication limit.
	limited := false
	for range 30 {
		if resp := post("/console/session", `{"token":"not-a-token"}`, nil); resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("30 wrong tokens at the console's sign-in met no limit")
	}
	raw, _ := consoleFiles.ReadFile("console/console.js")
	if strings.Contains(string(raw), "sessionStorage") || strings.Contains(string(raw), "localStorage") {
		t.Fatal("the console's script keeps something in web storage")
	}
}

// gatewayTo starts a gateway of its own, beside s's broker, proxying to
// upstreams, and returns it as a stack to call.
func (s *stack) gatewayTo(upstreams map[string][]string) *stack {
	s.t.Helper()
	gw, err := Start(context.Background(), withTestAuth(s.t, Config{
		Services: []string{"gateway"}, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), InternalSecret: strings.Repeat("k", 32),
		Logger: bustest.Logger(s.t), Upstreams: upstreams,
	}))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { gw.Close(context.Background()) })
	return &stack{t: s.t, base: gw.URL()}
}

// TestGatewayWithoutABroker: a gateway of static upstreams starts with no
// --nats, proxies, is ready, and its console views that read the broker
// answer 503 saying what to add; the command line accepts it too.
func TestGatewayWithoutABroker(t *testing.T) {
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"sku":"UP"}]`)
	}))
	defer inventory.Close()
	gw, err := Start(context.Background(), withTestAuth(t, Config{
		Services: []string{"gateway"}, Addr: "127.0.0.1:0", InternalSecret: strings.Repeat("k", 32),
		Logger: bustest.Logger(t), Upstreams: map[string][]string{"inventory": {inventory.URL}},
	}))
	if err != nil {
		t.Fatalf("a gateway of static upstreams with no broker: %v", err)
	}
	defer gw.Close(context.Background())
	g := &stack{t: t, base: gw.URL()}
	bustest.Eventually(t, 10*time.Second, "the gateway ready", func() bool {
		return g.do("GET", "/readyz", nil, nil, nil).StatusCode == http.StatusOK
	})
	var products []map[string]any
	if resp := g.do("GET", "/api/products", nil, nil, &products); resp.StatusCode != http.StatusOK || len(products) != 1 {
		t.Fatalf("GET /api/products through it = %d %v", resp.StatusCode, products)
	}
	var p struct{ Detail string }
	if resp := g.do("GET", "/api/admin/dlq", nil, nil, &p); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "--nats") {
		t.Fatalf("GET /api/admin/dlq on it = %d %q, want 503 naming --nats", resp.StatusCode, p.Detail)
	}
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"serve", "gateway", "--upstream", "inventory=" + inventory.URL,
		"--internal-secret", strings.Repeat("k", 32), "--addr", "nonsense"}, &out, &errOut)
	if code == 0 || strings.Contains(errOut.String(), "needs --nats") || !strings.Contains(errOut.String(), "--addr nonsense") {
		t.Fatalf("serve gateway with no --nats = %d %q, want only its --addr refused", code, errOut.String())
	}
}
