package apperr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// TestKindSurvivesWrapping: a kind given deep down is the kind the HTTP
// layer answers with, however many layers wrap it; an error that is no
// apperr is Internal (a 500, its text kept from the client); the message
// names the field and keeps the cause, which errors.Is still finds.
func TestKindSurvivesWrapping(t *testing.T) {
	inner := apperr.Invalidf("items[0].sku", "unknown SKU %q", "MUG")
	err := fmt.Errorf("place order: %w", fmt.Errorf("validate: %w", inner))
	if apperr.KindOf(err) != apperr.Invalid {
		t.Errorf("KindOf a wrapped Invalid = %v", apperr.KindOf(err))
	}
	if e, ok := apperr.As(err); !ok || e != inner || e.Field != "items[0].sku" {
		t.Errorf("As = %v %v", e, ok)
	}
	if got := inner.Error(); got != `items[0].sku: unknown SKU "MUG"` {
		t.Errorf("message = %q", got)
	}
	if apperr.KindOf(errors.New("disk full")) != apperr.Internal || apperr.KindOf(nil) != apperr.Internal {
		t.Error("a plain error is not Internal")
	}
	if _, ok := apperr.As(errors.New("disk full")); ok {
		t.Error("As found an apperr in a plain error")
	}
	caused := &apperr.Error{Kind: apperr.Unavailable, Msg: "provider", Err: context.DeadlineExceeded}
	if !errors.Is(caused, context.DeadlineExceeded) || caused.Error() != "provider: context deadline exceeded" {
		t.Errorf("a caused error = %q, Is its cause %v", caused.Error(), errors.Is(caused, context.DeadlineExceeded))
	}
}
