package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// StepSeconds is the time from an event to the event it caused, by both
// types: each step of the saga (order.placed → stock.reserved, …,
// payment.captured → order.completed) and of its compensations. Causes
// reach a handler only after their schema check, so both labels are
// catalog types.
var StepSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "ordermesh_saga_step_seconds",
	Help:    "Time from an event to the event it caused, by the cause's type (from) and the effect's (to).",
	Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
}, []string{"from", "to"})

// observeStep records the step from cause to ev.
func observeStep(cause *bus.Event, ev bus.Event) {
	if cause == nil || cause.Time.IsZero() {
		return
	}
	StepSeconds.WithLabelValues(cause.Type, ev.Type).Observe(max(0, ev.Time.Sub(cause.Time)).Seconds())
}
