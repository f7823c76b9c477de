package order

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/event"
)

// Metrics of the orders service, registered by the process that runs it.
var (
	// Finished counts orders reaching a terminal state, by state and
	// cancel reason ("" for completed).
	Finished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ordermesh_orders_finished_total",
		Help: "Orders that reached a terminal state, by status and cancel reason (empty when completed).",
	}, []string{"status", "reason"})
	// Lifetime is the time from placement to the terminal state.
	Lifetime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ordermesh_order_duration_seconds",
		Help:    "Time from an order's placement to its terminal state, by status.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
	}, []string{"status"})
)

func init() {
	// Known series start at zero, so dashboards and alerts see them at once.
	Finished.WithLabelValues(Completed, "")
	Lifetime.WithLabelValues(Completed)
	Lifetime.WithLabelValues(Cancelled)
	for _, r := range []string{event.ReasonOutOfStock, event.ReasonPaymentDeclined, event.ReasonTimeout, event.ReasonCustomerRequest, event.ReasonRejected} {
		Finished.WithLabelValues(Cancelled, r)
	}
}

// countFinished records o's end once its transaction commits.
func countFinished(o *Order, now time.Time) func() {
	status, reason, took := o.Status, o.CancelReason, now.Sub(o.CreatedAt).Seconds()
	return func() {
		Finished.WithLabelValues(status, reason).Inc()
		Lifetime.WithLabelValues(status).Observe(took)
	}
}
