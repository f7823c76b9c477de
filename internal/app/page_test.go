package app

import (
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

// nextLink is the rel="next" target of a response's Link header, or "".
func nextLink(resp *http.Response) string {
	m := regexp.MustCompile(`<([^>]+)>;\s*rel="next"`).FindStringSubmatch(resp.Header.Get("Link"))
	if m == nil {
		return ""
	}
	return m[1]
}

// TestListsPageAndFilter: GET /api/orders and GET /api/webhooks/deliveries
// answer pages of ?limit items with a Link to the next page, every item
// once; ?status filters orders; a forged cursor is a 400.
func TestListsPageAndFilter(t *testing.T) {
	s := webhookStack(t)
	r := newReceiver(t, nil)
	s.subscribe(r, "order.placed")
	s.addProduct("PAGED", 10)
	var ids []string
	for i := range 5 {
		token := psp.TokenOK
		if i == 4 {
			token = psp.TokenDecline
		}
		ids = append(ids, s.place(orderBody(fmt.Sprintf("c%d", i), token, order.ItemRequest{SKU: "PAGED", Quantity: 1})).ID)
	}
	s.settle(ids, 30*time.Second)

	seen := map[string]int{}
	path, pages := "/api/orders?limit=2", 0
	for path != "" {
		var got []order.Order
		resp := s.do("GET", path, nil, nil, &got)
		if resp.StatusCode != http.StatusOK || len(got) > 2 {
			t.Fatalf("GET %s = %d with %d orders", path, resp.StatusCode, len(got))
		}
		for _, o := range got {
			seen[o.ID]++
		}
		path, pages = nextLink(resp), pages+1
		if pages > 5 {
			t.Fatal("the pages never end")
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("order %s listed %d times over the pages, want once", id, seen[id])
		}
	}
	var all []order.Order
	if resp := s.do("GET", "/api/orders?limit=5", nil, nil, &all); len(all) != 5 || nextLink(resp) != "" {
		t.Errorf("an exactly full last page: %d orders, next %q; want 5 and no next page", len(all), nextLink(resp))
	}
	var cancelled []order.Order
	s.do("GET", "/api/orders?status=cancelled", nil, nil, &cancelled)
	if len(cancelled) != 1 || cancelled[0].ID != ids[4] {
		t.Errorf("?status=cancelled = %d orders, want only %s", len(cancelled), ids[4])
	}
	for _, bad := range []string{"/api/orders?status=lost", "/api/orders?cursor=forged", "/api/orders?limit=0", "/api/webhooks/deliveries?limit=501", "/api/webhooks/deliveries?cursor=!!"} {
		if resp := s.do("GET", bad, nil, nil, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", bad, resp.StatusCode)
		}
	}

	var deliveries []map[string]any
	bustest.Eventually(t, 10*time.Second, "a delivery per order.placed", func() bool {
		s.do("GET", "/api/webhooks/deliveries", nil, nil, &deliveries)
		return len(deliveries) == 5
	})
	if resp := s.do("GET", "/api/webhooks/deliveries?limit=3", nil, nil, &deliveries); len(deliveries) != 3 || nextLink(resp) == "" {
		t.Fatalf("deliveries?limit=3 = %d deliveries, next %q; want 3 and a next page", len(deliveries), nextLink(resp))
	} else {
		var rest []map[string]any
		s.do("GET", nextLink(resp), nil, nil, &rest)
		if len(rest) != 2 {
			t.Errorf("the second page of deliveries has %d, want 2", len(rest))
		}
	}
}
