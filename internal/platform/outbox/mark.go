package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// markSentInOrder follows each batch's acks in order and moves the sent
// mark over the acknowledged prefix; it saves the mark at most every
// SaveEvery while rows flow, soon after they stop, and when the relay
// stops. Failures are kept for sendNext to rewind.
func (r *Relay) markSentInOrder() {
	defer close(r.markDone)
	defer r.saveMark()
	save := time.NewTimer(r.cfg.SaveEvery)
	save.Stop()
	var lastSave time.Time
	failedGen := int64(-1) // batches sent before the rewind that follows a failure
	for {
		select {
		case b, ok := <-r.inflight:
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs := b.pending.Wait(ctx)
			cancel()
			upto, err := ackedPrefix(b.ids, errs)
			if b.gen != failedGen && upto > r.acked.Load() {
				r.acked.Store(upto)
			}
			if err != nil {
				// Later batches of this generation must not move the mark
				// past the rows that failed.
				failedGen = b.gen
				r.fail(err)
			}
			r.marking.Done()
			if since := time.Since(lastSave); since >= r.cfg.SaveEvery {
				r.saveMark()
				lastSave = time.Now()
			} else {
				save.Reset(r.cfg.SaveEvery - since)
			}
		case <-save.C:
			r.saveMark()
			lastSave = time.Now()
		}
	}
}

// ackedPrefix returns the highest id of the batch below which every row
// was stored (0 if the first was not), and the first failure.
func ackedPrefix(ids []int64, errs []error) (int64, error) {
	first, err := publishFailure(ids, errs)
	if err == nil {
		return ids[len(ids)-1], nil
	}
	var upto int64
	if first > 0 {
		upto = ids[first-1]
	}
	return upto, err
}

// publishFailure returns the index of a batch's first failed publish and
// an error that counts the failures and wraps the first; nil when every
// row was stored.
func publishFailure(ids []int64, errs []error) (first int, err error) {
	nfailed := 0
	first = -1
	for i, e := range errs {
		if e != nil {
			nfailed++
			if first < 0 {
				first = i
			}
		}
	}
	if nfailed == 0 {
		return -1, nil
	}
	return first, fmt.Errorf("%d of %d outbox events not published: %w", nfailed, len(ids), errs[first])
}

func (r *Relay) fail(err error) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	if r.failed == nil {
		r.failed = err
	}
}

func (r *Relay) takeFailure() error {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	err := r.failed
	r.failed = nil
	return err
}

// acknowledged waits for a batch's acks and returns the ids of the rows the
// broker stored, and the first failure if some were not.
func acknowledged(ctx context.Context, ids []int64, p bus.Pending) (sent []int64, failed error) {
	errs := p.Wait(ctx)
	if _, failed = publishFailure(ids, errs); failed == nil {
		return ids, nil
	}
	sent = make([]int64, 0, len(ids))
	for i, err := range errs {
		if err == nil {
			sent = append(sent, ids[i])
		}
	}
	return sent, failed
}
