package notification

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
		got              message
		subject, bodyHas string
	}{
		{event.OrderPlaced, placedMessage("o1"), "We received your order", "Order o1 is being processed."},
		{event.OrderConfirmed, confirmedMessage("o1"), "Your order is confirmed", "Order o1 is paid"},
		{event.ShipmentCreated, shippedMessage("o1", event.Shipment{Tracking: "OM123"}), "Your order has shipped", "tracking OM123."},
		{event.OrderCompleted, completedMessage("o1"), "Your order is complete", "order o1"},
		{event.OrderCancelled, cancelledMessage("o1", event.Cancelled{Reason: "out_of_stock"}), "Your order was cancelled", "cancelled (out_of_stock). You have not been charged."},
	}
	for _, tt := range tests {
		if tt.got.subject != tt.subject || !strings.Contains(tt.got.body, tt.bodyHas) {
			t.Errorf("%s: %q, %q; want %q and a body with %q", tt.name, tt.got.subject, tt.got.body, tt.subject, tt.bodyHas)
		}
	}
}

// TestConsumerHandlesWhatItIsToldOf: the consumer subscribes to exactly
// the steps a customer hears of.
func TestConsumerHandlesWhatItIsToldOf(t *testing.T) {
	cfg, _ := (&Service{}).Consumer()
	want := []string{event.OrderPlaced, event.OrderConfirmed, event.ShipmentCreated, event.OrderCompleted, event.OrderCancelled}
	if strings.Join(cfg.Types, ",") != strings.Join(want, ",") {
		t.Errorf("types = %v, want %v", cfg.Types, want)
	}
}
