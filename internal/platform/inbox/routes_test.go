package inbox_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

func TestRoutesDecodeAndDispatchByType(t *testing.T) {
	type placed struct {
		OrderID string `json:"order_id"`
	}
	var got []string
	routes := inbox.Routes{
		inbox.On("order.placed", func(_ context.Context, _ *sqldb.Tx, ev bus.Event, d placed) error {
			got = append(got, ev.Type+":"+d.OrderID)
			return nil
		}),
		inbox.OnEvent("order.cancelled", func(_ context.Context, _ *sqldb.Tx, ev bus.Event) error {
			got = append(got, ev.Type+":"+ev.Subject)
			return nil
		}),
	}
	if types := routes.Types(); !slices.Equal(types, []string{"order.placed", "order.cancelled"}) {
		t.Fatalf("Types() = %v, want the routes' types in order", types)
	}
	h := routes.Handler("test")
	ctx := context.Background()
	data, _ := json.Marshal(placed{OrderID: "o1"})
	for _, ev := range []bus.Event{
		{Type: "order.placed", Subject: "o1", Data: data},
		{Type: "order.cancelled", Subject: "o2", Data: []byte(`{}`)},
	} {
		if err := h(ctx, nil, ev); err != nil {
			t.Fatalf("%s: %v", ev.Type, err)
		}
	}
	if !slices.Equal(got, []string{"order.placed:o1", "order.cancelled:o2"}) {
		t.Fatalf("handled %v, want each event by its route with its data decoded", got)
	}
	if err := h(ctx, nil, bus.Event{Type: "stock.reserved", Data: []byte(`{}`)}); !bus.IsPermanent(err) {
		t.Fatalf("a type without a route: %v, want a permanent error", err)
	}
	if err := h(ctx, nil, bus.Event{Type: "order.placed", Data: []byte(`{"order_id": 7}`)}); !bus.IsPermanent(err) {
		t.Fatalf("data that does not decode: %v, want a permanent error", err)
	}
}
