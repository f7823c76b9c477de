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
// TestAPausedInstanceLosesItsPartitionsAndWakesAsAStandby, in a process of
// its own so that the test can pause it. It takes 5 ms per event, so
// that it holds messages when it is paused.
func TestPausedInstanceChild(t *testing.T) {
	url := os.Getenv(pauseTestURL)
	if url == "" {
		t.Skip("a child process of TestAPausedInstanceLosesItsPartitionsAndWakesAsAStandby")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(nc, bus.Config{Partitioned: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	_, err = b.ConsumeBatch(context.Background(), bus.ConsumerConfig{Name: "test-wake", Types: []string{"item.added"}},
		func(_ context.Context, evs []bus.Event) []error {
			for _, ev := range evs {
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				fmt.Printf("handled %s\n", ev.Subject)
				mu.Unlock()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	select {} // until the test kills it
}

// TestAPausedInstanceLosesItsPartitionsAndWakesAsAStandby: an instance
// paused (SIGSTOP) with messages in hand stops asking the broker for
// more, and after PinnedTTL the broker pins the other instance to its
// partitions; the messages it held are redelivered there. Nothing in
// the paused process has to notice: when it wakes, it finishes what it
// held (beside their redelivery: the databases' row locks and inboxes
// make that safe), its next pull requests carry a pin that is no longer
// current, and it becomes a standby. The two then share the partitions
// again, and every event published after that goes to one instance only.
func TestAPausedInstanceLosesItsPartitionsAndWakesAsAStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses a process for longer than PinnedTTL")
	}
	s := bustest.Start(t)
	ctx := context.Background()
	cfg := bus.ConsumerConfig{Name: "test-wake", Types: []string{"item.added"}}
	byA := startPausedChild(t, s)
	// a is pinned to every partition before b starts.
	n := 0
	publish := func(prefix string, count int) []string {
		var subjects []string
		for range count {
			subject := fmt.Sprintf("%s-%d", prefix, n)
			n++
			if err := s.Bus.Publish(ctx, bustest.NewEvent(t, "item.added", subject, 0)); err != nil {
				t.Fatal(err)
			}
			subjects = append(subjects, subject)
		}
		return subjects
	}
	bustest.Eventually(t, 20*time.Second, "a to handle events of every partition", func() bool {
		publish("start", 8)
		return byA.count() >= 40
	})
	_, b, byB := consumeOn(t, s, true, cfg)
	split := func() bool {
		publish("split", 8)
		return len(b.Partitions()) == bus.Partitions/2 && pinned(t, s, cfg.Name) == bus.Partitions
	}
	bustest.Eventually(t, 30*time.Second, "a and b to be pinned to half of the partitions each", split)

	held := publish("held", 200) // a takes 5 ms an event: it holds some when paused
	bustest.Eventually(t, 30*time.Second, "a to be handling the events published last", func() bool {
		return slices.ContainsFunc(held, byA.has)
	})
	if err := syscallPause(t, byA.proc, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	bustest.Eventually(t, 30*time.Second, "b to be pinned to every partition while a is paused", func() bool {
		publish("paused", 8)
		return len(b.Partitions()) == bus.Partitions
	})
	t.Logf("b pinned to every partition %s after a was paused", time.Since(paused).Round(100*time.Millisecond))
	if err := syscallPause(t, byA.proc, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 30*time.Second, "a, awake, and b to share the partitions again", split)
	bustest.Eventually(t, 30*time.Second, "every event held at the pause handled", func() bool {
		for _, subject := range held {
			if !byA.has(subject) && !byB.has(subject) {
				return false
			}
		}
		return true
	})
	var twice int
	for _, subject := range held {
		if byA.has(subject) && byB.has(subject) {
			twice++
		}
	}
	t.Logf("%d of the %d events published just before the pause were handled by both (a held them)", twice, len(held))

	after := publish("after", 40)
	bustest.Eventually(t, 20*time.Second, "every event after the wake handled", func() bool {
		for _, subject := range after {
			if !byA.has(subject) && !byB.has(subject) {
				return false
			}
		}
		return true
	})
	var both []string
	for _, subject := range after {
		if byA.has(subject) && byB.has(subject) {
			both = append(both, subject)
		}
	}
	if len(both) > 0 {
		slices.Sort(both)
		t.Fatalf("handled by both instances after the wake: %v", both)
	}
}

// child is the paused instance: its process and what it handled.
type child struct {
	*seen
	proc *os.Process
}

// startPausedChild starts TestPausedInstanceChild against s.
func startPausedChild(t *testing.T, s *bustest.Server) child {
	cmd := exec.Command(os.Args[0], "-test.run=^TestPausedInstanceChild$")
	cmd.Env = append(os.Environ(), pauseTestURL+"="+s.ClientURL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = bustest.LogWriter(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := child{seen: &seen{subjects: map[string]bool{}}, proc: cmd.Process}
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if subject, ok := strings.CutPrefix(lines.Text(), "handled "); ok {
				c.mu.Lock()
				c.subjects[subject] = true
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func syscallPause(t *testing.T, p *os.Process, sig syscall.Signal) error {
	t.Logf("%s to instance a", sig)
	return p.Signal(sig)
}

// pinned counts the partitions of consumer that the broker has pinned to
// an instance.
func pinned(t *testing.T, s *bustest.Server, consumer string) int {
	n := 0
	for p := range bus.Partitions {
		cons, err := s.Bus.JetStream().Consumer(context.Background(), bus.StreamEvents, fmt.Sprintf("%s-p%02d", consumer, p))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range cons.CachedInfo().PriorityGroups {
			if g.PinnedClientID != "" {
				n++
			}
		}
	}
	return n
}
