package app_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/app"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// ordermesh runs the command line in-process and returns its exit code and
// output.
func ordermesh(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestDLQReplay dead-letters an event while its consumer's cause of failure
// is present, fixes the cause, and replays it with `ordermesh dlq replay`:
// the consumer processes it, and another consumer of the same event type
// does not see it a second time.
func TestDLQReplay(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	var mu sync.Mutex
	processed := map[string]int{}
	traces := map[string]string{} // the traceparent each replayed event came with
	c, err := s.Bus.Consume(ctx, bus.ConsumerConfig{Name: "payments-authorize", Types: []string{"stock.reserved"}},
		func(_ context.Context, ev bus.Event) error {
			if broken.Load() {
				return bus.Permanent(errors.New("unknown currency XTS"))
			}
			mu.Lock()
			processed[ev.ID]++
			traces[ev.ID] = ev.TraceParent
			mu.Unlock()
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	var otherSaw atomic.Int32
	other, err := s.Bus.Consume(ctx, bus.ConsumerConfig{Name: "notifications-send", Types: []string{"stock.reserved"}},
		func(context.Context, bus.Event) error { otherSaw.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()

	ev, err := bus.NewEvent("stock.reserved", "inventory", "order-1", map[string]string{"currency": "XTS"})
	if err != nil {
		t.Fatal(err)
	}
	ev.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" // the order's trace
	if err := s.Bus.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	nats := "--nats=" + s.ClientURL()
	var listed string
	bustest.Eventually(t, 10*time.Second, "the dead letter listed", func() bool {
		_, listed, _ = ordermesh(t, "dlq", "list", nats)
		return strings.Contains(listed, ev.ID)
	})
	if !strings.Contains(listed, "payments-authorize") || !strings.Contains(listed, "unknown currency XTS") {
		t.Fatalf("dlq list does not show the consumer and error:\n%s", listed)
	}
	code, shown, stderr := ordermesh(t, "dlq", "show", "1", nats)
	if code != 0 || !strings.Contains(shown, `"currency":"XTS"`) || !strings.Contains(shown, "events.stock.reserved") {
		t.Fatalf("dlq show 1 = %d\n%s\n%s", code, shown, stderr)
	}

	broken.Store(false) // the cause is fixed
	if code, out, stderr := ordermesh(t, "dlq", "replay", "1", nats); code != 0 {
		t.Fatalf("dlq replay 1 exited %d:\n%s%s", code, out, stderr)
	}
	bustest.Eventually(t, 10*time.Second, "the replayed event processed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return processed[ev.ID] == 1
	})
	if _, out, _ := ordermesh(t, "dlq", "list", nats); !strings.Contains(out, "no dead letters") {
		t.Fatalf("DLQ not empty after a successful replay:\n%s", out)
	}
	if _, out, _ := ordermesh(t, "dlq", "list", "--json", nats); strings.TrimSpace(out) != "[]" {
		t.Fatalf("dlq list --json of an empty DLQ = %q, want []", out)
	}
	mu.Lock()
	// The same trace (the span may be the handling's own, a child, when a
	// tracer records).
	if traceOf := func(tp string) string { return strings.Split(tp+"--", "-")[1] }; traceOf(traces[ev.ID]) != traceOf(ev.TraceParent) {
		t.Errorf("the replayed event came with traceparent %q, not in its order's trace %q: a replay continues the order's trace", traces[ev.ID], ev.TraceParent)
	}
	mu.Unlock()
	if n := otherSaw.Load(); n != 1 {
		t.Fatalf("the other consumer saw the event %d times, want once (a replay goes to the named consumer only)", n)
	}
}

func TestDLQReplayAllAndPurge(t *testing.T) {
	s := bustest.Start(t)
	ctx := context.Background()
	c, err := s.Bus.Consume(ctx, bus.ConsumerConfig{Name: "always-fails", Types: []string{"thing.happened"}},
		func(context.Context, bus.Event) error { return bus.Permanent(errors.New("nope")) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for range 3 {
		ev, _ := bus.NewEvent("thing.happened", "test", "x", map[string]int{})
		if err := s.Bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		dls, err := s.Bus.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(dls)
	}
	bustest.Eventually(t, 10*time.Second, "three dead letters", func() bool { return count() == 3 })
	nats := "--nats=" + s.ClientURL()
	if code, out, _ := ordermesh(t, "dlq", "replay", "--all", nats); code != 0 || !strings.Contains(out, "3 dead letter(s) replayed") {
		t.Fatalf("replay --all = %d %s", code, out)
	}
	// Still failing, so each comes back as a new dead letter with a new id.
	bustest.Eventually(t, 10*time.Second, "three new dead letters", func() bool { return count() == 3 })
	dls, _ := s.Bus.DeadLetters(ctx)
	if dls[0].ID <= 3 || dls[0].Stream != bus.StreamReplay {
		t.Fatalf("re-failed dead letter = %+v, want a new id from the REPLAY stream", dls[0])
	}
	if code, _, stderr := ordermesh(t, "dlq", "purge", nats); code != 2 || !strings.Contains(stderr, "--yes") {
		t.Fatalf("purge without --yes = %d %s, want exit 2 asking for --yes", code, stderr)
	}
	if code, out, _ := ordermesh(t, "dlq", "purge", "--yes", nats); code != 0 || !strings.Contains(out, "purged 3") {
		t.Fatalf("purge --yes = %d %s", code, out)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d dead letters after purge", n)
	}
	code, _, stderr := ordermesh(t, "dlq", "show", strconv.Itoa(int(dls[0].ID)), nats)
	if code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("show of a purged id = %d %s, want exit 1 'not found'", code, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"NoCommand":       {nil, "no command"},
		"UnknownCommand":  {[]string{"frobnicate"}, `unknown command "frobnicate"`},
		"UnknownFlag":     {[]string{"run", "--colour=blue"}, "colour"},
		"ServeNoService":  {[]string{"serve", "--nats", "nats://x:4222"}, "exactly one SERVICE"},
		"ServeBadService": {[]string{"serve", "billing", "--nats", "nats://x:4222"}, `unknown service "billing"`},
		"ServeNoNATS":     {[]string{"serve", "orders", "--db", "sqlite:x.db"}, "--nats"},
		"ServeNoDB":       {[]string{"serve", "orders", "--nats", "nats://x:4222"}, "--db"},
		"ServeOthersFlag": {[]string{"serve", "shipping", "--nats", "nats://x:4222", "--db", "sqlite:x.db", "--psp-error-rate", "0.5"},
			"--psp-error-rate is for serve psp, not serve shipping"},
		"ServeSharedFlag": {[]string{"serve", "orders", "--nats", "nats://x:4222", "--db", "sqlite:x.db", "--psp-api-key", "k"},
			"--psp-api-key is for serve payments and serve psp, not serve orders"},
		"BadMaxDeliver":  {[]string{"run", "--max-deliver", "0"}, "--max-deliver"},
		"LoadBadDrain":   {[]string{"load", "--drain", "0s"}, "--drain must be positive"},
		"BadLogLevel":    {[]string{"run", "--log-level", "loud"}, "--log-level"},
		"BadLogFormat":   {[]string{"run", "--log-format", "xml"}, "--log-format"},
		"DLQNoCommand":   {[]string{"dlq"}, "list, show, replay or purge"},
		"DLQBadID":       {[]string{"dlq", "show", "abc"}, `"abc"`},
		"DLQReplayNoIDs": {[]string{"dlq", "replay"}, "--all"},
		"MigrateDBNoSvc": {[]string{"migrate", "--db", "sqlite:x.db"}, "--service"},
		// serve checks its flags before it connects to anything: the broker
		// here is unreachable, and would be an exit 1 after retries.
		"ServeBadDB":       {[]string{"serve", "shipping", "--nats", "nats://127.0.0.1:1", "--db", "bogus"}, `--db: unsupported database "bogus"`},
		"ServeBadPGDB":     {[]string{"serve", "shipping", "--nats", "nats://127.0.0.1:1", "--db", "postgres://u:hunter2@h:port/db"}, "invalid port"},
		"ServeNoSecret":    {[]string{"serve", "shipping", "--nats", "nats://127.0.0.1:1", "--db", "sqlite:x.db"}, "needs --internal-secret"},
		"ServeShortSecret": {[]string{"serve", "shipping", "--nats", "nats://127.0.0.1:1", "--db", "sqlite:x.db", "--internal-secret", "short"}, "at least 32"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := ordermesh(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "hunter2") {
				t.Fatalf("exit %d, stderr %q; want exit 2 mentioning %q (and no password)", code, stderr, tt.want)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("ORDERMESH_MAX_DELIVER", "0")
	code, _, stderr := ordermesh(t, "run")
	if code != 2 || !strings.Contains(stderr, "--max-deliver") {
		t.Fatalf("ORDERMESH_MAX_DELIVER=0 gave exit %d %q, want the flag's validation error", code, stderr)
	}
	t.Setenv("ORDERMESH_MAX_DELIVER", "lots")
	code, _, stderr = ordermesh(t, "run")
	if code != 2 || !strings.Contains(stderr, "ORDERMESH_MAX_DELIVER") {
		t.Fatalf("ORDERMESH_MAX_DELIVER=lots gave exit %d %q, want an error naming the variable", code, stderr)
	}
}

// TestServeStartupFailuresAreClear checks that a service that cannot reach
// its broker or database exits 1 with a message saying what to fix, and
// leaves nothing running.
func TestServeStartupFailuresAreClear(t *testing.T) {
	s := bustest.Start(t)
	key, err := sealed.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORDERMESH_PAYMENT_TOKEN_PUBLIC_KEY", key.Public().String())
	secret := "--internal-secret=" + strings.Repeat("s", 32)
	tests := map[string]struct {
		args []string
		want string
	}{
		"NATSUnreachable": {[]string{"serve", "orders", "--nats", "nats://ordermesh:hunter2@127.0.0.1:1", "--db", "sqlite:" + t.TempDir() + "/o.db", "--addr", "127.0.0.1:0", secret}, "is the broker running"},
		"DBDirMissing":    {[]string{"serve", "orders", "--nats", s.ClientURL(), "--db", "sqlite:" + t.TempDir() + "/no/such/dir/o.db", "--addr", "127.0.0.1:0", secret}, "directory"},
		"AddrInvalid":     {[]string{"serve", "gateway", "--nats", s.ClientURL(), "--upstream", "orders=http://127.0.0.1:1", "--addr", "nonsense"}, "--addr"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := ordermesh(t, tt.args...)
			if code != 1 || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "hunter2") {
				t.Fatalf("exit %d, stderr %q; want exit 1 mentioning %q (and no password)", code, stderr, tt.want)
			}
		})
	}
}
