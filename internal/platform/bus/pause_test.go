package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// pauseTestURL, set in a child process's environment, makes
// TestPausedInstanceChild run instance a of the consumer test-wake
// against that server, printing the subject of every event it handles.
const pauseTestURL = "ORDERMESH_BUS_PAUSE_TEST_URL"

// TestPausedInstanceChild is instance a of
// TestAnInstanceThatWakesAfterItsMembershipLapsedStopsItsPartitions, in a
// process of its own so that the test can pause it.
func TestPausedInstanceChild(t *testing.T) {
	url := os.Getenv(pauseTestURL)
	if url == "" {
		t.Skip("a child process of TestAnInstanceThatWakesAfterItsMembershipLapsedStopsItsPartitions")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(nc, bus.Config{Partitioned: true, Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	_, err = b.ConsumeBatch(context.Background(), bus.ConsumerConfig{Name: "test-wake", Types: []string{"item.added"}},
		func(_ context.Context, evs []bus.Event) []error {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				fmt.Printf("handled %s\n", ev.Subject)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	select {} // until the test kills it
}

// TestAnInstanceThatWakesAfterItsMembershipLapsedStopsItsPartitions: an
// instance paused (SIGSTOP) for longer than LeaseTTL loses its membership,
// and another takes its partitions. When it wakes, its next membership
// write succeeds; it must still stop the partitions it held, not consume
// them beside their new holder (one order's events on two instances at
// once), and the two must end up sharing the partitions again.
func TestAnInstanceThatWakesAfterItsMembershipLapsedStopsItsPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses a process for longer than a lease")
	}
	s := bustest.Start(t)
	ctx := context.Background()
	child := exec.Command(os.Args[0], "-test.run=^TestPausedInstanceChild$")
	child.Env = append(os.Environ(), pauseTestURL+"="+s.ClientURL())
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = bustest.LogWriter(t)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	var mu sync.Mutex
	byA := map[string]bool{}
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if subject, ok := strings.CutPrefix(lines.Text(), "handled "); ok {
				mu.Lock()
				byA[subject] = true
				mu.Unlock()
			}
		}
	}()
	cfg := bus.ConsumerConfig{Name: "test-wake", Types: []string{"item.added"}}
	busB, b, byB := consumeOn(t, s, "b", true, cfg)
	leases, err := busB.JetStream().KeyValue(ctx, "ordermesh_partitions")
	if err != nil {
		t.Fatal(err)
	}
	held := func(instance string) (n int) {
		for p := range bus.Partitions {
			if e, err := leases.Get(ctx, fmt.Sprintf("l.%s.%d", cfg.Name, p)); err == nil && string(e.Value()) == instance {
				n++
			}
		}
		return n
	}
	split := func() bool {
		return held("a") == bus.Partitions/2 && len(b.Partitions()) == bus.Partitions/2 && held("b") == bus.Partitions/2
	}
	bustest.Eventually(t, 30*time.Second, "a and b to hold two partitions each", split)

	if err := child.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, "b to take every partition while a is paused", func() bool {
		return len(b.Partitions()) == bus.Partitions
	})
	if err := child.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, "a, awake, and b to hold two partitions each again", split)

	// Every subject now goes to one instance only.
	const subjects = 40
	for i := range subjects {
		if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", fmt.Sprintf("w-%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	bustest.Eventually(t, 20*time.Second, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for i := range subjects {
			subject := fmt.Sprintf("w-%d", i)
			if byA[subject] || byB.has(subject) {
				n++
			}
		}
		return n == subjects
	})
	mu.Lock()
	defer mu.Unlock()
	var both []string
	for i := range subjects {
		if subject := fmt.Sprintf("w-%d", i); byA[subject] && byB.has(subject) {
			both = append(both, subject)
		}
	}
	if len(both) > 0 {
		slices.Sort(both)
		t.Fatalf("handled by both instances: %v", both)
	}
}
