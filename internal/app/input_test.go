package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/psp"
)

func TestIdempotencyKey(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("KEYED", 100)
	body, _ := json.Marshal(orderBody("gina", psp.TokenOK, order.ItemRequest{SKU: "KEYED", Quantity: 1}))
	hdr := map[string]string{"Idempotency-Key": "checkout-42"}

	var first, second order.Order
	r1 := s.do("POST", "/api/orders", hdr, body, &first)
	r2 := s.do("POST", "/api/orders", hdr, body, &second)
	t.Run("Replay", func(t *testing.T) {
		if r1.StatusCode != 202 || r2.StatusCode != 202 || first.ID != second.ID {
			t.Fatalf("first %d %s, replay %d %s", r1.StatusCode, first.ID, r2.StatusCode, second.ID)
		}
		if r2.Header.Get("Idempotent-Replayed") != "true" || r1.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("Idempotent-Replayed: first %q, replay %q", r1.Header.Get("Idempotent-Replayed"), r2.Header.Get("Idempotent-Replayed"))
		}
		if r2.Header.Get("Location") != "/api/orders/"+first.ID {
			t.Fatalf("replay Location = %q", r2.Header.Get("Location"))
		}
		var all []order.Order
		s.do("GET", "/api/orders?customer_id=gina", nil, nil, &all)
		if len(all) != 1 {
			t.Fatalf("%d orders for one key, want 1", len(all))
		}
	})
	t.Run("Mismatch", func(t *testing.T) {
		other, _ := json.Marshal(orderBody("gina", psp.TokenOK, order.ItemRequest{SKU: "KEYED", Quantity: 2}))
		var p httpx.Problem
		if resp := s.do("POST", "/api/orders", hdr, other, &p); resp.StatusCode != 422 || p.Field != "Idempotency-Key" {
			t.Fatalf("same key, other body = %d %+v; want 422 naming Idempotency-Key", resp.StatusCode, p)
		}
	})
	t.Run("InFlight", func(t *testing.T) {
		// The same request holding the key right now, as a concurrent
		// duplicate sees it while the first is still being processed.
		sum := sha256.Sum256(body)
		_, err := s.n.stores["orders"].db.Exec(context.Background(),
			"INSERT INTO idempotency_keys (caller, key, request_hash, state, claimed_us) VALUES ('test-admin', 'busy-key', ?, 'in_flight', ?)",
			hex.EncodeToString(sum[:]), time.Now().UnixMicro())
		if err != nil {
			t.Fatal(err)
		}
		var p httpx.Problem
		if resp := s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": "busy-key"}, body, &p); resp.StatusCode != 409 || p.Field != "Idempotency-Key" {
			t.Fatalf("duplicate while in flight = %d %+v, want 409", resp.StatusCode, p)
		}
	})
	s.settle([]string{first.ID}, 20*time.Second)
}

func TestBadInputChangesNothing(t *testing.T) {
	s := startStack(t, Config{})
	s.addProduct("REAL", 10)
	good := func(mut func(m map[string]any)) []byte {
		m := map[string]any{
			"customer_id":      "henry",
			"items":            []any{map[string]any{"sku": "REAL", "quantity": 1}},
			"payment_token":    "tok_ok",
			"shipping_address": map[string]any{"name": "H", "line1": "1 Road", "city": "Oslo", "postal_code": "0150", "country": "NO"},
		}
		if mut != nil {
			mut(m)
		}
		b, _ := json.Marshal(m)
		return b
	}
	item := func(sku string, q any) map[string]any { return map[string]any{"sku": sku, "quantity": q} }
	many := make([]any, 101)
	for i := range many {
		many[i] = item(fmt.Sprintf("S%d", i), 1)
	}
	tests := map[string]struct {
		body        []byte
		contentType string
		noKey       bool
		status      int
		field       string
	}{
		"MalformedJSON":    {body: []byte(`{"customer_id": "x",`), status: 400},
		"NotJSON":          {body: []byte(`customer_id=x`), status: 400},
		"WrongContentType": {body: good(nil), contentType: "text/plain", status: 415},
		"NoIdempotencyKey": {body: good(nil), noKey: true, status: 400, field: "Idempotency-Key"},
		"MissingCustomer":  {body: good(func(m map[string]any) { delete(m, "customer_id") }), status: 400, field: "customer_id"},
		"MissingItems":     {body: good(func(m map[string]any) { delete(m, "items") }), status: 400, field: "items"},
		"MissingToken":     {body: good(func(m map[string]any) { delete(m, "payment_token") }), status: 400, field: "payment_token"},
		"MissingAddress":   {body: good(func(m map[string]any) { delete(m, "shipping_address") }), status: 400, field: "shipping_address.name"},
		"BadCountry": {body: good(func(m map[string]any) {
			m["shipping_address"].(map[string]any)["country"] = "Norway"
		}), status: 400, field: "shipping_address.country"},
		"UnknownField":     {body: good(func(m map[string]any) { m["discount"] = 100 }), status: 400, field: "discount"},
		"ZeroQuantity":     {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", 0)} }), status: 400, field: "items[0].quantity"},
		"NegativeQuantity": {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", -3)} }), status: 400, field: "items[0].quantity"},
		"AbsurdQuantity":   {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", 1e9)} }), status: 400, field: "items[0].quantity"},
		"FractionalQty":    {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", 1.5)} }), status: 400, field: "items.quantity"},
		"StringQuantity":   {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", "two")} }), status: 400, field: "items.quantity"},
		"TooManyLines":     {body: good(func(m map[string]any) { m["items"] = many }), status: 400, field: "items"},
		"DuplicateSKU":     {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", 1), item("REAL", 2)} }), status: 400, field: "items[1].sku"},
		"BadSKU":           {body: good(func(m map[string]any) { m["items"] = []any{item("no spaces", 1)} }), status: 400, field: "items[0].sku"},
		"UnknownSKU":       {body: good(func(m map[string]any) { m["items"] = []any{item("REAL", 1), item("GHOST", 1)} }), status: 422, field: "items[1].sku"},
		"OverOneMiB":       {body: good(func(m map[string]any) { m["customer_id"] = strings.Repeat("x", 2<<20) }), status: 413},
		"TwoValues":        {body: append(good(nil), good(nil)...), status: 400},
		"EmptyBody":        {body: []byte{}, status: 400},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			hdr := map[string]string{"Idempotency-Key": "bad-" + name}
			if tt.noKey {
				hdr = nil
			}
			req, _ := http.NewRequest("POST", s.base+"/api/orders", strings.NewReader(string(tt.body)))
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var p httpx.Problem
			json.Unmarshal(raw, &p)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("answer %d %s %s, want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), raw, tt.status)
			}
			if tt.field != "" && p.Field != tt.field {
				t.Fatalf("problem names field %q, want %q: %s", p.Field, tt.field, raw)
			}
		})
	}
	// Nothing stored, nothing published, no key left claimed.
	var all []order.Order
	s.do("GET", "/api/orders", nil, nil, &all)
	if len(all) != 0 {
		t.Fatalf("bad input stored %d orders", len(all))
	}
	for _, ev := range bustest.ReadStream(t, s.bus, bus.StreamEvents) {
		if ev.Type == event.OrderPlaced {
			t.Fatalf("bad input published %s", ev.Type)
		}
	}
	var keys int
	s.n.stores["orders"].db.QueryRow(context.Background(), "SELECT COUNT(*) FROM idempotency_keys").Scan(&keys)
	if keys != 0 {
		t.Fatalf("%d idempotency keys left behind by bad input", keys)
	}
}

// TestConcurrentDuplicatesMakeOneOrder: the same checkout sent many times
// at once (a retrying client, a double click) makes exactly one order, and
// every copy is answered with it.
func TestConcurrentDuplicatesMakeOneOrder(t *testing.T) {
	eachBackend(t, Config{}, func(t *testing.T, s *stack) {
		s.addProduct("DOUBLE", 100)
		body, _ := json.Marshal(orderBody("ivan", psp.TokenOK, order.ItemRequest{SKU: "DOUBLE", Quantity: 1}))
		const copies = 12
		ids := make([]string, copies)
		codes := make([]int, copies)
		var wg sync.WaitGroup
		for i := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var o order.Order
				resp := s.do("POST", "/api/orders", map[string]string{"Idempotency-Key": "double-click"}, body, &o)
				codes[i], ids[i] = resp.StatusCode, o.ID
			}()
		}
		wg.Wait()
		for i := range copies {
			if codes[i] != 202 || ids[i] != ids[0] {
				t.Fatalf("copy %d = %d %q, want 202 with the one order %q (all: %v %v)", i, codes[i], ids[i], ids[0], codes, ids)
			}
		}
		var all []order.Order
		s.do("GET", "/api/orders?customer_id=ivan", nil, nil, &all)
		if len(all) != 1 {
			t.Fatalf("%d orders from %d copies of one checkout, want 1", len(all), copies)
		}
		s.settle([]string{ids[0]}, 20*time.Second)
	})
}
