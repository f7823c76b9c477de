package app

// Tests for what a hostile or careless client found (the hardening issue):
// each asserts the answer a client gets and that nothing changed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// TestIdempotencyKeysAreTheCallers: the same Idempotency-Key from two
// customers is two independent requests. Bob neither gets Alice's order
// (with her address) nor learns that her key exists.
func TestIdempotencyKeysAreTheCallers(t *testing.T) {
	eachBackend(t, Config{}, func(t *testing.T, s *stack) {
		s.addProduct("SHARED", 100)
		alice := customerToken(t, "alice", "orders:read orders:write")
		bob := customerToken(t, "bob", "orders:read orders:write")
		place := func(tok, customer string, qty int) (*http.Response, order.Order) {
			body, _ := json.Marshal(orderBody(customer, psp.TokenOK, order.ItemRequest{SKU: "SHARED", Quantity: qty}))
			var o order.Order
			resp := s.do("POST", "/api/orders", map[string]string{"Authorization": "Bearer " + tok, "Idempotency-Key": "cart-1001"}, body, nil)
			if resp.StatusCode == 202 {
				json.NewDecoder(resp.Body).Decode(&o)
			}
			return resp, o
		}
		r1, a := place(alice, "alice", 1)
		r2, b := place(bob, "bob", 1)
		if r1.StatusCode != 202 || r2.StatusCode != 202 {
			t.Fatalf("alice %d, bob %d; want 202 for both", r1.StatusCode, r2.StatusCode)
		}
		if r2.Header.Get("Idempotent-Replayed") != "" || b.ID == a.ID || b.CustomerID != "bob" {
			t.Fatalf("bob's request with alice's key answered with %+v (replayed %q); want an order of his own",
				b, r2.Header.Get("Idempotent-Replayed"))
		}
		if r3, c := place(bob, "bob", 2); r3.StatusCode != 422 || c.ID != "" {
			t.Fatalf("bob reusing his own key with another body = %d; want 422", r3.StatusCode)
		}
		if r4, again := place(alice, "alice", 1); r4.StatusCode != 202 || again.ID != a.ID || r4.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("alice's retry = %d %s, want a replay of %s", r4.StatusCode, again.ID, a.ID)
		}
		s.settle([]string{a.ID, b.ID}, 30*time.Second)
	})
}

// TestWebhookEndpointsRefuseNonPublicAddresses: every spelling of a
// loopback, private or link-local address is refused at creation, and no
// endpoint is stored.
func TestWebhookEndpointsRefuseNonPublicAddresses(t *testing.T) {
	s := startStack(t, Config{})
	for _, u := range []string{
		"http://[::1%25lo]:9/x", "http://[::1%251]:9/x", "http://[fe80::1%25eth0]:9/x", "http://[fd00::1%25eth0]:9/x",
		"http://[::ffff:127.0.0.1]:9/x", "http://[::127.0.0.1]:9/x", "http://[2002:7f00:1::]:9/x",
		"http://[64:ff9b::a00:1]:9/x", "http://[fec0::1]:9/x", "http://127.0.0.1:9/x", "http://169.254.169.254/latest",
	} {
		var p httpx.Problem
		resp := s.do("POST", "/api/webhooks/endpoints", nil, map[string]any{"url": u, "event_types": []string{event.OrderPlaced}}, &p)
		if resp.StatusCode != 400 || p.Field != "url" {
			t.Errorf("%s: %d %+v; want 400 naming url", u, resp.StatusCode, p)
		}
	}
	var eps []webhook.Endpoint
	s.do("GET", "/api/webhooks/endpoints", nil, nil, &eps)
	if len(eps) != 0 {
		t.Fatalf("refused URLs stored %d endpoints: %+v", len(eps), eps)
	}
}

// TestProviderAPIIsNotOnThePublicPort: the payment-provider simulator
// stands for an outside system. Nobody reaches it through ordermesh's
// listener, and its own loopback listener wants its API key.
func TestProviderAPIIsNotOnThePublicPort(t *testing.T) {
	s := startStack(t, Config{})
	body := `{"order_id":"0190c0de-0000-7000-8000-000000000001","amount_cents":50000,"currency":"EUR","token":"tok_ok"}`
	for _, op := range []string{"authorize", "capture", "void", "refund"} {
		resp := s.do("POST", "/psp/v1/"+op, map[string]string{"Idempotency-Key": "probe-" + op}, body, nil)
		if resp.StatusCode != 404 {
			t.Errorf("POST /psp/v1/%s on the API port = %d, want 404", op, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", s.n.cfg.Payments.Client.BaseURL+"/psp/v1/authorize", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "probe-direct")
	req.Header.Set("Authorization", "Bearer not-the-key")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("provider API with a wrong key = %d, want 401", resp.StatusCode)
	}
	var ops []pspapi.Operation
	s.do("GET", "/api/admin/psp/ledger", nil, nil, &ops)
	if len(ops) != 0 {
		t.Fatalf("refused provider calls wrote the ledger: %+v", ops)
	}
}

// TestBrokerNeedsCredentials: the embedded broker's TCP port refuses a
// client without the credentials in the data directory.
func TestBrokerNeedsCredentials(t *testing.T) {
	dir := t.TempDir()
	s := startStack(t, Config{DataDir: dir, NATSListen: "127.0.0.1:0"})
	open := s.n.embedded.ClientURL()
	if nc, err := nats.Connect(open); err == nil {
		nc.Close()
		t.Fatalf("connected to %s without credentials", open)
	}
	if nc, err := nats.Connect(open, nats.UserInfo(NATSUser, "wrong")); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}
	pw, err := os.ReadFile(filepath.Join(dir, NATSPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(open, nats.UserInfo(NATSUser, strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("with the data directory's password: %v", err)
	}
	nc.Close()
	if fi, err := os.Stat(filepath.Join(dir, NATSPasswordFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestForgedEventsChangeNothing: payloads that break their schema are
// dead-lettered before any handler runs; a well-formed order.placed for an
// order the orders service never accepted is cancelled (reason rejected),
// so its stock is released and any authorization voided.
func TestForgedEventsChangeNothing(t *testing.T) {
	eachBackend(t, Config{}, testForgedEvents)
}

func testForgedEvents(t *testing.T, s *stack) {
	s.addProduct("FORGED", 10)
	ctx := context.Background()
	placed := func(id string, total int64) event.Placed {
		return event.Placed{OrderID: id, CustomerID: "mallory", Items: []event.Line{{SKU: "FORGED", Quantity: 2, UnitPriceCents: 25000}},
			TotalCents: total, Currency: "EUR", PaymentToken: psp.TokenOK, ShippingAddress: address}
	}
	bad := []bus.Event{
		bustest.NewEvent(t, event.OrderPlaced, "forged-null", nil),
		bustest.NewEvent(t, event.OrderPlaced, "forged-negative", placed("forged-negative", -2500)),
		bustest.NewEvent(t, event.OrderCancelled, "forged-reason", map[string]any{"order_id": "forged-reason", "customer_id": "x", "reason": "because"}),
	}
	for _, ev := range bad {
		if err := s.bus.Publish(ctx, fromPublisher(ev)); err != nil {
			t.Fatal(err)
		}
	}
	forged := "0190c0de-0000-7000-8000-00000000f0f0"
	if err := s.bus.Publish(ctx, fromPublisher(bustest.NewEvent(t, event.OrderPlaced, forged, placed(forged, 50000)))); err != nil {
		t.Fatal(err)
	}
	// Every consumer of each bad event dead-letters it: order.placed has
	// orders, inventory, payments and notifications; order.cancelled
	// inventory, payments and notifications (and webhooks has every type).
	got := map[string]int{}
	bustest.Eventually(t, 30*time.Second, "the schema-breaking events in the DLQ", func() bool {
		dls, _ := s.bus.DeadLetters(ctx)
		clear(got)
		for _, dl := range dls {
			got[dl.EventID]++
		}
		return got[bad[0].ID] >= 4 && got[bad[1].ID] >= 4 && got[bad[2].ID] >= 3
	})
	for _, dl := range mustDeadLetters(t, s.bus) {
		if !strings.Contains(dl.Error, "schema") {
			t.Errorf("dead letter %s of %s: %q, want a schema violation", dl.Consumer, dl.Type, dl.Error)
		}
	}
	// The well-formed forgery is cancelled (reason rejected), and once
	// inventory and payments have handled that, nothing stays reserved and
	// nothing stays authorized.
	bustest.Eventually(t, 30*time.Second, "order.cancelled (rejected) for the forged order", func() bool {
		for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
			if ev.Type == event.OrderCancelled && ev.Subject == forged && strings.Contains(string(ev.Data), event.ReasonRejected) {
				return true
			}
		}
		return false
	})
	seq, err := s.bus.LastSequence(ctx, event.OrderCancelled, forged)
	if err != nil {
		t.Fatal(err)
	}
	for _, consumer := range []string{inventory.ConsumerName, payment.ConsumerName} {
		bustest.Eventually(t, 30*time.Second, consumer+" to handle the cancellation", func() bool {
			ok, _ := s.bus.AckedThrough(ctx, consumer, forged, seq)
			return ok
		})
	}
	var ops []pspapi.Operation
	bustest.Eventually(t, 30*time.Second, "the forged order's authorization voided (or never made)", func() bool {
		ops = nil
		s.do("GET", "/api/admin/psp/ledger?order_id="+forged, nil, nil, &ops)
		authorized, voided := false, false
		for _, op := range ops {
			authorized = authorized || (op.Op == pspapi.OpAuthorize && op.Outcome == pspapi.OutcomeApproved)
			voided = voided || (op.Op == pspapi.OpVoid && op.Outcome == pspapi.OutcomeDone)
		}
		return !authorized || voided
	})
	var ledger []inventory.Ledger
	bustest.Eventually(t, 30*time.Second, "the forged order's stock released", func() bool {
		s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
		return len(ledger) == 1 && ledger[0].Reserved == 0 && ledger[0].Available == 10
	})
	for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
		if (ev.Subject == "forged-null" || ev.Subject == "forged-negative") && ev.Type != event.OrderPlaced {
			t.Errorf("a schema-breaking event caused %s", ev.Type)
		}
	}
	var payments int
	s.n.stores["payments"].db.QueryRow(ctx, "SELECT COUNT(*) FROM payments WHERE order_id IN ('', 'forged-null', 'forged-negative') OR amount_cents < 0").Scan(&payments)
	if payments != 0 {
		t.Fatalf("schema-breaking events stored %d payments", payments)
	}
}

// fromPublisher is ev with the source of the service allowed to publish
// its type: a forgery made with the broker's administrative identity,
// which the broker and the source check let through.
func fromPublisher(ev bus.Event) bus.Event {
	ev.Source = event.Source(event.Publishers[ev.Type])
	return ev
}

func mustDeadLetters(t *testing.T, b *bus.Bus) []bus.DeadLetter {
	t.Helper()
	dls, err := b.DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

// TestBadInputChangesNoState: nulls, NUL bytes and repeated keys are 400s
// naming the field, and nothing is stored.
func TestBadInputChangesNoState(t *testing.T) {
	eachBackend(t, Config{}, testBadInput)
}

func testBadInput(t *testing.T, s *stack) {
	s.addProduct("OK", 10)
	product := func(extra string) string {
		return `{"sku":"NEW1","name":"New","price_cents":100,"currency":"EUR","stock":1` + extra + `}`
	}
	orderJSON := func(name string) string {
		return `{"customer_id":"c1","items":[{"sku":"OK","quantity":1}],"payment_token":"tok_ok",` +
			`"shipping_address":{"name":"` + name + `","line1":"1 Road","city":"Oslo","postal_code":"0150","country":"NO"}}`
	}
	for name, tt := range map[string]struct{ path, body, field string }{
		"NullPrice":      {"/api/products", `{"sku":"NEW1","name":"New","price_cents":null,"currency":"EUR","stock":1}`, "price_cents"},
		"NulInName":      {"/api/products", `{"sku":"NEW1","name":"Ne\u0000w","price_cents":100,"currency":"EUR","stock":1}`, "name"},
		"RepeatedKey":    {"/api/products", `{"sku":"NEW1","name":"New","price_cents":-5,"currency":"EUR","stock":1,"price_cents":100}`, "price_cents"},
		"RepeatedKey2":   {"/api/products", product(`,"stock":5`), "stock"},
		"NulInAddress":   {"/api/orders", orderJSON(`Ada\u0000`), "shipping_address.name"},
		"NullAddress":    {"/api/orders", strings.Replace(orderJSON("Ada"), `"line1":"1 Road"`, `"line1":null`, 1), "shipping_address.line1"},
		"NulDescription": {"/api/webhooks/endpoints", `{"url":"https://example.com/h","event_types":["order.placed"],"description":"a\u0000b"}`, "description"},
	} {
		t.Run(name, func(t *testing.T) {
			var p httpx.Problem
			resp := s.do("POST", tt.path, map[string]string{"Idempotency-Key": "bad-" + name}, tt.body, &p)
			if resp.StatusCode != 400 || p.Field != tt.field {
				t.Fatalf("= %d %+v; want 400 naming %s", resp.StatusCode, p, tt.field)
			}
		})
	}
	var products []inventory.Product
	s.do("GET", "/api/products", nil, nil, &products)
	var orders []order.Order
	s.do("GET", "/api/orders", nil, nil, &orders)
	var eps []webhook.Endpoint
	s.do("GET", "/api/webhooks/endpoints", nil, nil, &eps)
	if len(products) != 1 || len(orders) != 0 || len(eps) != 0 {
		t.Fatalf("refused requests stored %d products (want 1), %d orders, %d endpoints", len(products), len(orders), len(eps))
	}
}

// TestSlowAndFailingClients: a body that stalls is cut off by the read
// timeout; an address that keeps failing authentication gets 429 and is
// then refused without its credentials being checked; customers' order
// writes are limited by default.
func TestSlowAndFailingClients(t *testing.T) {
	s := startStack(t, Config{BodyTimeout: time.Second})
	t.Run("StalledBody", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"sku\":\"SL", testAuth.admin)
		// The server must give up on the body well before this deadline.
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = io.ReadAll(bufio.NewReader(conn))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection still open 20s after the body stalled (read timeout 1s)")
		}
	})
	t.Run("FailedAuthentication", func(t *testing.T) {
		var last *http.Response
		for i := 0; i < 30; i++ {
			last = s.do("GET", "/api/orders", map[string]string{"Authorization": "Bearer om_guess" + fmt.Sprint(i)}, nil, nil)
			if last.StatusCode == 429 {
				break
			}
			if last.StatusCode != 401 {
				t.Fatalf("bad key %d = %d, want 401 then 429", i, last.StatusCode)
			}
		}
		if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" {
			t.Fatalf("after 30 failed attempts = %d (Retry-After %q), want 429", last.StatusCode, last.Header.Get("Retry-After"))
		}
		// Blocked: even a valid token from this address waits.
		if resp := s.do("GET", "/api/orders", nil, nil, nil); resp.StatusCode != 429 {
			t.Fatalf("valid token from a blocked address = %d, want 429", resp.StatusCode)
		}
	})
}

// TestCustomerOrderWritesAreLimitedByDefault: with no --rate-limit given, a
// customer's order writes carry the default limit's headers.
func TestCustomerOrderWritesAreLimitedByDefault(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("LIMITED", 10)
	tok := customerToken(t, "dora", "orders:write orders:read")
	resp := s.as(tok, "POST", "/api/orders", orderBody("dora", psp.TokenOK, order.ItemRequest{SKU: "LIMITED", Quantity: 1}), nil)
	if resp.StatusCode != 202 || resp.Header.Get("RateLimit-Policy") != `"orders:write";q=600;w=60, "orders:write;burst";q=60;w=6` {
		t.Fatalf("= %d, RateLimit-Policy %q; want 202 under the default orders:write limit", resp.StatusCode, resp.Header.Get("RateLimit-Policy"))
	}
}

// TestStreamResumedAfterTheEndIsNoContent: resuming a finished order's
// stream after its last event answers 204, so EventSource stops.
func TestStreamResumedAfterTheEndIsNoContent(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("DONE", 10)
	o := s.place(orderBody("erin", psp.TokenOK, order.ItemRequest{SKU: "DONE", Quantity: 1}))
	final := s.settle([]string{o.ID}, 30*time.Second)[o.ID]
	req, _ := http.NewRequest("GET", s.base+"/api/orders/"+o.ID+"/events", nil)
	req.Header.Set("Last-Event-ID", fmt.Sprint(final.Version))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("stream resumed at the terminal version: %v (it must end, not stay open)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("= %d, want 204", resp.StatusCode)
	}
}

// TestNewProductIsOrderableAtOnce: the 201 of a product creation means an
// order for it is accepted on the next request.
func TestNewProductIsOrderableAtOnce(t *testing.T) {
	s := startStack(t, Config{})
	for i := range 5 {
		sku := fmt.Sprintf("FRESH%d", i)
		resp := s.do("POST", "/api/products", nil, inventory.NewProduct{SKU: sku, Name: "Fresh", PriceCents: 300, Currency: "EUR", Stock: 3}, nil)
		if resp.StatusCode != 201 {
			t.Fatalf("create %s = %d", sku, resp.StatusCode)
		}
		body, _ := json.Marshal(orderBody("fay", psp.TokenOK, order.ItemRequest{SKU: sku, Quantity: 1}))
		if resp := s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": newKey()}, body, nil); resp.StatusCode != 202 {
			answer, _ := io.ReadAll(resp.Body)
			t.Fatalf("order for %s right after its 201 = %d %s, want 202", sku, resp.StatusCode, answer)
		}
	}
}

// TestDataDirectoryIsLocked: a second node on a live data directory is
// refused with a message naming the first; migrate refuses a directory
// that does not exist unless asked to create it.
func TestDataDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	startStack(t, Config{DataDir: dir})
	_, err := Start(context.Background(), withTestAuth(t, Config{Services: Services, Addr: "127.0.0.1:0", DataDir: dir, Logger: bustest.Logger(t)}))
	if err == nil || !strings.Contains(err.Error(), "in use by ordermesh run (pid") {
		t.Fatalf("second node on %s: %v; want a refusal naming the running process", dir, err)
	}
	code, _, stderr := cli(t, "migrate", "--data", dir)
	if code != 1 || !strings.Contains(stderr, "in use") {
		t.Fatalf("migrate on a live directory = %d %q", code, stderr)
	}
	missing := filepath.Join(t.TempDir(), "nonexistent")
	code, stdout, stderr := cli(t, "migrate", "--data", missing)
	if _, statErr := os.Stat(missing); code != 2 || !strings.Contains(stderr, "--create") || statErr == nil || stdout != "" {
		t.Fatalf("migrate --data %s = %d %q %q (exists: %v); want exit 2, nothing created", missing, code, stdout, stderr, statErr == nil)
	}
	if code, stdout, _ := cli(t, "migrate", "--data", missing, "--create"); code != 0 || !strings.Contains(stdout, "orders: migrated") {
		t.Fatalf("migrate --create = %d %q", code, stdout)
	}
}

// TestCommandLineDefaults: load takes N/s beside a bare number, and run
// listens on loopback unless told otherwise.
func TestCommandLineDefaults(t *testing.T) {
	for in, want := range map[string]float64{"300": 300, "300/s": 300, "18000/m": 300, "1.5": 1.5} {
		var r rateValue
		if err := r.Set(in); err != nil || float64(r) != want {
			t.Errorf("--rate %s = %v, %v; want %g", in, float64(r), err, want)
		}
	}
	for _, in := range []string{"fast", "300/d", "/s"} {
		var r rateValue
		if err := r.Set(in); err == nil {
			t.Errorf("--rate %s accepted", in)
		}
	}
	var help bytes.Buffer
	Main(context.Background(), []string{"run", "--help"}, &help, &help)
	if !strings.Contains(help.String(), "(default 127.0.0.1:8080)") {
		t.Fatalf("run --help does not show a loopback default address:\n%s", help.String())
	}
}

// cli runs the command line in this process: exit code, stdout, stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestTwoPartitionedInstancesCompleteOrders: every saga service runs
// twice (two nodes on one broker and the same databases), with partitioned
// consumers: the broker's pins split the partitions between the
// instances, and every order still completes or cancels with the
// invariants holding.
func TestTwoPartitionedInstancesCompleteOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("two full nodes")
	}
	dir := t.TempDir()
	cfg := Config{DataDir: dir, NATSListen: "127.0.0.1:0", Partitioned: true}
	dsns := map[string]string{}
	if base := os.Getenv(sqldbtest.PostgresEnv); base != "" {
		cfg.DSNs = map[string]string{}
		for _, name := range Services {
			cfg.DSNs[name] = sqldbtest.PostgresSchema(t, base)
		}
		dsns = cfg.DSNs
	}
	s := startStack(t, cfg)
	saga := []string{"orders", "inventory", "payments", "shipping", "notifications"}
	for _, svc := range saga {
		if _, ok := dsns[svc]; !ok {
			dsns[svc] = "sqlite:" + filepath.Join(dir, svc+".db")
		}
	}
	second, err := Start(context.Background(), Config{
		Services: saga, Addr: "127.0.0.1:0", NATSURL: s.n.NATSURL(), DSNs: dsns, Partitioned: true,
		InternalSecret: strings.Repeat("0123456789abcdef", 4), Payments: s.n.cfg.Payments,
		Logger: bustest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())
	split := func(n *Node) bool {
		n.consMu.Lock()
		defer n.consMu.Unlock()
		for _, c := range n.cons {
			// nil: an unpartitioned consumer (notifications').
			if p := c.(*bus.Consumer).Partitions(); p != nil && len(p) != bus.Partitions/2 {
				return false
			}
		}
		return len(n.cons) > 0
	}
	s.addProduct("TWICE", 400)
	var ids []string
	place := func(n int) {
		for range n {
			i := len(ids)
			token := []string{psp.TokenOK, psp.TokenOK, psp.TokenDecline}[i%3]
			ids = append(ids, s.place(orderBody(fmt.Sprintf("c%d", i%7), token, order.ItemRequest{SKU: "TWICE", Quantity: 1})).ID)
		}
	}
	// The broker pins a partition to an instance when it delivers one of
	// its events: orders flow while the first node gives half back.
	bustest.Eventually(t, 60*time.Second, "each node to be pinned to half of every consumer's partitions", func() bool {
		place(4)
		return split(s.n) && split(second)
	})
	place(30)
	s.checkInvariants(s.settle(ids, 60*time.Second))
}
