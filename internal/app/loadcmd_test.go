package app

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestLoadCommand runs `ordermesh load` against a running system with a
// share of failing orders, and checks the report: every order sent was
// accepted and settled, failures were cancelled for the expected reasons,
// and the invariants held.
func TestLoadCommand(t *testing.T) {
	for _, follow := range []string{"stream", "order"} {
		t.Run(follow, func(t *testing.T) { testLoadCommand(t, follow) })
	}
}

func testLoadCommand(t *testing.T, follow string) {
	s := startStack(t, Config{})
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"load", "--target", s.base, "--token", testAuth.admin, "--rate", "100", "--duration", "2s", "--mix", "0.6", "--json", "-", "--follow", follow}, &out, &errOut)
	if code != 0 {
		t.Fatalf("load exited %d\n%s\n%s", code, out.String(), errOut.String())
	}
	raw := out.Bytes() // only the JSON: the summary went to stderr
	var report struct {
		Result struct {
			Sent, Accepted, Completed, Cancelled, Unsettled int64
			Errors                                          map[string]int64   `json:"errors"`
			CancelReasons                                   map[string]int64   `json:"cancel_reasons"`
			Completion                                      map[string]float64 `json:"completion_latency"`
		} `json:"result"`
		Violations []string `json:"invariant_violations"`
	}
	if err := json.Unmarshal(raw, &report); err != nil {
		t.Fatalf("--json output: %v\n%s", err, raw)
	}
	r := report.Result
	if r.Sent != 200 || r.Accepted != 200 || r.Unsettled != 0 || r.Completed+r.Cancelled != 200 || len(r.Errors) != 0 {
		t.Fatalf("result = %+v", r)
	}
	for _, reason := range []string{"payment_declined", "out_of_stock", "customer_request"} {
		if r.CancelReasons[reason] == 0 {
			t.Errorf("no order cancelled for %s with --mix 0.6: %v", reason, r.CancelReasons)
		}
	}
	if r.Completion["count"] != 200 || r.Completion["p99_ms"] <= 0 {
		t.Errorf("completion latency = %v", r.Completion)
	}
	if len(report.Violations) != 0 {
		t.Errorf("violations: %v", report.Violations)
	}
}

// TestLoadWithoutATokenSaysWhatToPass: load with no token and a data
// directory without run's dev token stops at once and says what to pass,
// instead of sending orders that all get 401.
func TestLoadWithoutATokenSaysWhatToPass(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"load", "--data", t.TempDir(), "--target", "http://127.0.0.1:1", "--duration", "1s"}, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "no token: pass --token") {
		t.Fatalf("exit %d, stderr %q; want 2 saying to pass --token or --data", code, errOut.String())
	}
}
