package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Check verifies the invariants (ARCHITECTURE.md) after a run through the admin API: every SKU
// balanced (received = available + reserved + committed), at most one
// capture per order, and no net charge on an order the run saw cancelled.
// It returns one line per violation.
func (r *Runner) Check(ctx context.Context, res Result) ([]string, error) {
	var violations []string
	var ledger []struct {
		SKU                                      string
		Received, Available, Reserved, Committed int
	}
	if err := r.getJSON(ctx, "/api/admin/inventory/ledger", &ledger); err != nil {
		return nil, err
	}
	for _, l := range ledger {
		if l.Received != l.Available+l.Reserved+l.Committed {
			violations = append(violations, fmt.Sprintf("SKU %s unbalanced: received %d != available %d + reserved %d + committed %d",
				l.SKU, l.Received, l.Available, l.Reserved, l.Committed))
		}
	}
	var ops []struct {
		Op          string `json:"op"`
		OrderID     string `json:"order_id"`
		AmountCents int64  `json:"amount_cents"`
		Outcome     string `json:"outcome"`
	}
	// Payments settle a little after orders (a void follows the cancel):
	// give them a few seconds before calling a charge a violation.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := r.getJSON(ctx, "/api/admin/psp/ledger", &ops); err != nil {
			return nil, err
		}
		captures, net := map[string]int{}, map[string]int64{}
		for _, op := range ops {
			if op.Outcome != "done" {
				continue
			}
			switch op.Op {
			case "capture":
				captures[op.OrderID]++
				net[op.OrderID] += op.AmountCents
			case "refund":
				net[op.OrderID] -= op.AmountCents
			}
		}
		var charged []string
		for _, id := range res.cancelledOrders {
			if net[id] != 0 {
				charged = append(charged, fmt.Sprintf("cancelled order %s carries a net charge of %d cents", id, net[id]))
			}
		}
		if len(charged) > 0 && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		violations = append(violations, charged...)
		for id, n := range captures {
			if n > 1 {
				violations = append(violations, fmt.Sprintf("order %s captured %d times", id, n))
			}
		}
		return violations, nil
	}
}

func (r *Runner) getJSON(ctx context.Context, path string, out any) error {
	resp, body, err := r.request(ctx, "GET", path, nil, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	return json.Unmarshal(body, out)
}

// Max looks for the highest rate the target sustains for step with no
// errors, every order settled and completion p99 within slo: it doubles the
// rate from start while runs pass, then bisects until the bounds are within
// 10%. A trial stops sending at its first error (an overloaded target
// refuses orders with 503), so a failing trial is short. It returns the best passing run (zero if none) and every run made.
func (r *Runner) Max(ctx context.Context, start float64, step, slo time.Duration, report func(Result, bool)) (Result, []Result) {
	var best Result
	var runs []Result
	pass, fail := 0.0, 0.0
	rate := start
	for range 12 {
		if ctx.Err() != nil {
			break
		}
		cfg := r.cfg
		cfg.Rate, cfg.Duration, cfg.StopOnError = rate, step, true
		// The trial follows orders as the runner does: with its watcher, if any.
		res := (&Runner{cfg: cfg, client: r.client, stream: r.stream, ends: r.ends}).Run(ctx)
		ok := res.ErrorCount() == 0 && res.Unsettled == 0 && res.Completion.P99 <= float64(slo.Milliseconds())
		runs = append(runs, res)
		if report != nil {
			report(res, ok)
		}
		if ok {
			best, pass = res, rate
		} else {
			fail = rate
		}
		switch {
		case fail == 0:
			rate *= 2
		case pass == 0:
			rate /= 2
		case (fail-pass)/fail < 0.1:
			return best, runs
		default:
			rate = (pass + fail) / 2
		}
	}
	return best, runs
}
