package notification

import (
	"strings"
	"testing"

	"github.com/ordermesh/ordermesh/internal/event"
)

// TestConsumerHandlesWhatItIsToldOf: the consumer subscribes to exactly
// the steps a customer hears of.
func TestConsumerHandlesWhatItIsToldOf(t *testing.T) {
	cfg, _ := (&Service{}).Consumer()
	want := []string{event.OrderPlaced, event.OrderConfirmed, event.ShipmentCreated, event.OrderCompleted, event.OrderCancelled}
	if strings.Join(cfg.Types, ",") != strings.Join(want, ",") {
		t.Errorf("types = %v, want %v", cfg.Types, want)
	}
}
