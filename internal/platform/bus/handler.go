package bus

import (
	"context"

	"github.com/ordermesh/ordermesh/internal/apperr"
)

// Handler processes one event. Returning nil acknowledges it. An error
// wrapped with Permanent sends the event to the dead-letter stream at once;
// any other error is transient: the event is redelivered after a growing
// delay, and dead-lettered once it has been delivered MaxDeliver times.
type Handler func(ctx context.Context, ev Event) error

// BatchHandler processes several events at once, typically in one database
// transaction, and returns each one's outcome: errs[i] for evs[i] with the
// meaning of a Handler's error, or a nil slice when all succeeded.
type BatchHandler func(ctx context.Context, evs []Event) (errs []error)

// Skipping wraps h so that the events skip names are acknowledged without
// reaching h (a consumer that can tell, cheaply and without writing, that
// an event needs nothing). skip reports, for each event, whether to skip
// it; when it fails, every event goes to h.
// FailAll is a batch handler's answer when every event of the batch failed
// with err (for example, their shared transaction did not commit).
func FailAll(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

func Skipping(h BatchHandler, skip func(ctx context.Context, evs []Event) ([]bool, error)) BatchHandler {
	return func(ctx context.Context, evs []Event) []error {
		skipped, err := skip(ctx, evs)
		if err != nil {
			return h(ctx, evs)
		}
		var rest []Event
		var at []int
		for i, ev := range evs {
			if !skipped[i] {
				rest = append(rest, ev)
				at = append(at, i)
			}
		}
		switch len(rest) {
		case 0:
			return nil
		case len(evs):
			return h(ctx, evs)
		}
		errs := h(ctx, rest)
		if errs == nil {
			return nil
		}
		all := make([]error, len(evs))
		for j, i := range at {
			all[i] = errs[j]
		}
		return all
	}
}

// PermanentError marks a failure that retrying cannot fix: the consumer
// dead-letters the event. It lives in apperr, so the domain's rules can
// say so without importing the broker.
type PermanentError = apperr.PermanentError

// Permanent wraps err so the consumer dead-letters the event instead of
// retrying it (apperr.Permanent). Permanent(nil) is nil.
func Permanent(err error) error { return apperr.Permanent(err) }

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool { return apperr.IsPermanent(err) }
