package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// TestDLQCommandWorksThroughTheAdminAPI: `ordermesh dlq` beside a running
// system with no broker port open lists, shows, replays and purges dead
// letters through the gateway's admin API, with an admin token; a
// customer's token is refused with what to pass instead.
func TestDLQCommandWorksThroughTheAdminAPI(t *testing.T) {
	s := startStack(t, Config{})
	var broken atomic.Bool
	broken.Store(true)
	var handled atomic.Int32
	c, err := s.bus.Consume(context.Background(), bus.ConsumerConfig{Name: "dlq-cli-test", Types: []string{event.ProductUpdated}},
		func(_ context.Context, ev bus.Event) error {
			if !strings.HasPrefix(ev.Subject, "POISON") {
				return nil
			}
			if broken.Load() {
				return bus.Permanent(errors.New("cannot price " + ev.Subject + " in XTS"))
			}
			handled.Add(1)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dlq := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"dlq"}, append(args, "--url", s.base, "--token", testAuth.admin)...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := dlq("list", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("dlq list --json of an empty DLQ = %d %q %s", code, out, errOut)
	}
	s.productEvent("POISON-1")
	s.productEvent("POISON-2")
	var listed string
	bustest.Eventually(t, 10*time.Second, "two dead letters listed", func() bool {
		_, listed, _ = dlq("list")
		return strings.Count(listed, "dlq-cli-test") == 2
	})
	if !strings.Contains(listed, "cannot price POISON-1 in XTS") {
		t.Fatalf("dlq list does not show the error:\n%s", listed)
	}
	if code, shown, errOut := dlq("show", "1"); code != 0 || !strings.Contains(shown, `"sku":"POISON-1"`) || !strings.Contains(shown, "dlq-cli-test") {
		t.Fatalf("dlq show 1 = %d\n%s%s", code, shown, errOut)
	}
	if code, _, errOut := dlq("show", "99"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("dlq show 99 = %d %s, want not found", code, errOut)
	}
	broken.Store(false)
	if code, out, errOut := dlq("replay", "1"); code != 0 || strings.Count(out, "replayed") != 1 {
		t.Fatalf("dlq replay 1 = %d\n%s%s", code, out, errOut)
	}
	bustest.Eventually(t, 10*time.Second, "the replayed event handled", func() bool { return handled.Load() == 1 })
	if code, out, errOut := dlq("purge", "--yes"); code != 0 || !strings.Contains(out, "purged 1") {
		t.Fatalf("dlq purge --yes = %d\n%s%s", code, out, errOut)
	}
	if _, out, _ := dlq("list"); !strings.Contains(out, "no dead letters") {
		t.Fatalf("the DLQ after a purge:\n%s", out)
	}

	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"dlq", "list", "--url", s.base, "--token", customerToken(t, "ada", "orders")}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "admin token") {
		t.Fatalf("dlq with a customer's token = %d %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = Main(context.Background(), []string{"dlq", "list", "--url", s.base, "--data", t.TempDir()}, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "no token: pass --token") {
		t.Fatalf("dlq with no token = %d %s", code, errOut.String())
	}
}
