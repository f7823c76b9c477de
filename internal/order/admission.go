package order

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Overload: past what the pipeline carries, orders queue, wait past their
// deadline and end as timeouts — accepted, then lost. Instead, while more
// than shedBacklog pending orders have waited longer than MaxWait, the
// orders service refuses new orders with 503 and Retry-After, so a client
// retries later (with the same Idempotency-Key) and the orders already
// accepted finish in time. A replayed key is still answered. The measure
// is the shared database's, so every instance sheds alike.
const shedBacklog = 100

// Shed counts the orders refused because the pipeline was overloaded.
var Shed = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "ordermesh_orders_shed_total",
	Help: "New orders refused with 503 because too many accepted orders were waiting longer than --order-max-wait.",
})

// admission says whether new orders are let in, from the backlog measured
// by measure (each deadline check).
type admission struct {
	overloaded atomic.Bool
}

// measure counts, up to shedBacklog+1, the pending orders that have waited
// longer than maxWait (their deadline is nearer than deadline - maxWait).
func (a *admission) measure(ctx context.Context, q sqldb.Querier, now time.Time, deadline, maxWait time.Duration) error {
	n, err := countPendingDueBefore(ctx, q, now.Add(deadline-maxWait), shedBacklog+1)
	if err != nil {
		return err
	}
	a.overloaded.Store(n > shedBacklog)
	return nil
}

// admit is nil, or the error that refuses a new order now.
func (a *admission) admit(maxWait time.Duration) error {
	if !a.overloaded.Load() {
		return nil
	}
	Shed.Inc()
	return apperr.New(apperr.Unavailable, "", "overloaded: more than %d orders have waited longer than %s; retry in a second with the same Idempotency-Key", shedBacklog, maxWait)
}
