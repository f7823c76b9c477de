package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// TestRelayDoesNotWaitForAWakeUpWithRowsOnlyInTheTable: rows whose
// handover was refused (the buffer was full) are only in the table. After
// sending the handed rows before them, the relay must go on to read the
// table at once, not wait for a commit to wake it (with a poll interval of
// an hour it would wait an hour; at the default, a second, which showed as
// one-second stalls in the outbox benchmark).
func TestRelayDoesNotWaitForAWakeUpWithRowsOnlyInTheTable(t *testing.T) {
	ctx := context.Background()
	s := bustest.Start(t)
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/o.db", Migrations())
	o := New(db)
	evs := make([]bus.Event, 5)
	for i := range evs {
		evs[i] = bustest.NewEvent(t, "order.placed", "o", map[string]string{"order_id": "o"})
	}
	for _, ev := range evs {
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return o.Add(ctx, tx, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	// As if the buffer had been full for the last two: they were refused.
	o.mu.Lock()
	o.handedOff = o.handedOff[:3]
	o.dropped = 1
	o.mu.Unlock()
	select { // no wake-up is pending: the commits' were taken long ago
	case <-o.wake:
	default:
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- NewRelay(o, RelayConfig{Publisher: s.Bus, PollInterval: time.Hour}).Run(runCtx) }()
	defer func() { stop(); <-done }()
	bustest.Eventually(t, 10*time.Second, "every row published", func() bool {
		return len(s.StreamEvents(t, bus.StreamEvents)) == len(evs)
	})
}

// TestTakeHandedOverSaysWhenMoreIsWaiting: handed rows after a gap, or rows
// refused since the relay last read the table to its end, mean more.
func TestTakeHandedOverSaysWhenMoreIsWaiting(t *testing.T) {
	o := &Outbox{handedOff: []handedRow{{id: 1}, {id: 2}, {id: 5}}}
	if took, more := o.takeHandedOver(0, 100); len(took) != 2 || !more {
		t.Fatalf("took %d, more %v; want 2 and more (rows 3 and 4 are missing, 5 waits)", len(took), more)
	}
	o = &Outbox{handedOff: []handedRow{{id: 1}, {id: 2}}, dropped: 3, caughtUp: 2}
	if took, more := o.takeHandedOver(0, 100); len(took) != 2 || !more {
		t.Fatalf("took %d, more %v; want 2 and more (a refused handover not read yet)", len(took), more)
	}
	o.readPast(3)
	if took, more := o.takeHandedOver(2, 100); len(took) != 0 || more {
		t.Fatalf("took %d, more %v; want nothing, caught up", len(took), more)
	}
}
