package notification

import (
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

func TestCompose(t *testing.T) {
	tests := []struct {
		typ, subject, bodyHas string
	}{
		{event.OrderPlaced, "We received your order", "Order o1 is being processed."},
		{event.OrderConfirmed, "Your order is confirmed", "Order o1 is paid"},
		{event.ShipmentCreated, "Your order has shipped", "tracking OM123."},
		{event.OrderCompleted, "Your order is complete", "order o1"},
		{event.OrderCancelled, "Your order was cancelled", "cancelled (out_of_stock). You have not been charged."},
	}
	for _, tt := range tests {
		subject, body, err := compose(tt.typ, "o1", "out_of_stock", "OM123")
		if err != nil || subject != tt.subject || !strings.Contains(body, tt.bodyHas) {
			t.Fatalf("compose(%s) = %q, %q, %v; want %q and a body with %q", tt.typ, subject, body, err, tt.subject, tt.bodyHas)
		}
	}
	if _, _, err := compose(event.StockReserved, "o1", "", ""); !bus.IsPermanent(err) {
		t.Fatalf("compose(stock.reserved) error = %v, want a permanent one", err)
	}
}
