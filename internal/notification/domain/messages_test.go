package domain

import (
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

// TestMessages: what the customer is told of each step, from the event's
// typed data.
func TestMessages(t *testing.T) {
	tests := []struct {
		name             string
		got              Message
		subject, bodyHas string
	}{
		{event.OrderPlaced, Placed("o1"), "We received your order", "Order o1 is being processed."},
		{event.OrderConfirmed, Confirmed("o1"), "Your order is confirmed", "Order o1 is paid"},
		{event.ShipmentCreated, Shipped("o1", event.Shipment{Tracking: "OM123"}), "Your order has shipped", "tracking OM123."},
		{event.OrderCompleted, Completed("o1"), "Your order is complete", "order o1"},
		{event.OrderCancelled, Cancelled("o1", event.Cancelled{Reason: "out_of_stock"}), "Your order was cancelled", "cancelled (out_of_stock). You have not been charged."},
	}
	for _, tt := range tests {
		if tt.got.Subject != tt.subject || !strings.Contains(tt.got.Body, tt.bodyHas) {
			t.Errorf("%s: %q, %q; want %q and a body with %q", tt.name, tt.got.Subject, tt.got.Body, tt.subject, tt.bodyHas)
		}
	}
}
