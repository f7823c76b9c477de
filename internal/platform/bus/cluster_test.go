package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

// TestStreamsWaitForTheClusterAndKeepTheirReplicas: stream setup against
// the first node of a 3-node cluster waits until the others join and then
// places three replicas; an instance that asks for fewer (or none) later
// leaves them at three.
func TestStreamsWaitForTheClusterAndKeepTheirReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	start := clusterOf3(t)
	first := start(0)
	nc, b := r3Bus(t, first.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.EnsureStreams(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("streams set up on one node of three: %v", err)
	case <-time.After(time.Second):
	}
	start(1)
	start(2)
	if err := <-done; err != nil {
		t.Fatalf("once the cluster formed: %v", err)
	}
	for _, asked := range []int{0, 1} {
		lower, err := bus.New(nc, bus.Config{Replicas: asked, Logger: bustest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := lower.EnsureStreams(ctx); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamReplay} {
			st, err := b.JetStream().Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if r := st.CachedInfo().Config.Replicas; r != 3 {
				t.Fatalf("after an instance asked for %d replicas, %s has %d, want 3", asked, name, r)
			}
		}
	}
}

// clusterOf3 returns a function that starts node i (0, 1 or 2) of a
// three-node cluster on loopback, on the same store each time.
func clusterOf3(t *testing.T) func(i int) *bus.Embedded {
	dir := t.TempDir()
	routes := make([]string, 3)
	listens := make([]string, 3)
	for i := range 3 {
		listens[i] = bustest.FreeAddr(t)
		routes[i] = "nats-route://" + listens[i]
	}
	return func(i int) *bus.Embedded {
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(dir, fmt.Sprint(i)), Listen: "127.0.0.1:0",
			Name: fmt.Sprintf("n%d", i), Cluster: "test", ClusterListen: listens[i], Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		return e
	}
}

// TestPartitionedConsumerWaitsForTheClusterToElect: an instance that
// starts a partitioned consumer while the cluster has no quorum (it came
// up beside a restarted node) waits for its durable consumers instead of
// failing its start.
func TestPartitionedConsumerWaitsForTheClusterToElect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	start := clusterOf3(t)
	first, second, third := start(0), start(1), start(2)
	nc, err := nats.Connect(first.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The bus says when it waits for the cluster: that is when the nodes
	// come back.
	retrying := make(chan struct{})
	var once sync.Once
	logs := bustest.LogWriter(t)
	watch := writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("consumer not ready; retrying")) {
			once.Do(func() { close(retrying) })
		}
		return logs.Write(p)
	})
	b, err := bus.New(nc, bus.Config{Replicas: 3, Partitioned: true, Logger: slog.New(slog.NewTextHandler(watch, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	second.Shutdown()
	third.Shutdown()
	done := make(chan error, 1)
	go func() {
		c, err := b.ConsumeBatch(ctx, bus.ConsumerConfig{Name: "test-elect", Types: []string{"item.added"}},
			func(context.Context, []bus.Event) []error { return nil })
		if err == nil {
			c.Stop()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a partitioned consumer started without a quorum: %v", err)
	case <-retrying:
	}
	start(1)
	start(2)
	if err := <-done; err != nil {
		t.Fatalf("once the cluster had a quorum again: %v", err)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestPublishingKeepsEachSubjectsOrderThroughALeaderKill: a relay-like
// publisher (batches of interleaved events of many orders, each round
// re-sending what failed, in commit order) goes on while the EVENTS
// stream's leader is killed; reading the stream afterwards, every order's
// events are stored in the order they were committed.
func TestPublishingKeepsEachSubjectsOrderThroughALeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	start := clusterOf3(t)
	nodes := []*bus.Embedded{start(0), start(1), start(2)}
	_, b := r3Bus(t, nodes[0].ClientURL()+","+nodes[1].ClientURL()+","+nodes[2].ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	const orders, steps = 200, 4
	var committed []bus.Event // step k of every order, then step k+1 of every order
	for k := range steps {
		for o := range orders {
			committed = append(committed, bustest.NewEvent(t, fmt.Sprintf("step.s%d", k), fmt.Sprintf("o-%d", o), map[string]int{"k": k}))
		}
	}
	remaining, killed := committed, false
	for len(remaining) > 0 {
		batch := remaining[:min(100, len(remaining))]
		errs := b.PublishBatch(ctx, batch)
		var failed []bus.Event
		for i, err := range errs {
			if err != nil {
				failed = append(failed, batch[i])
			}
		}
		if errs == nil {
			failed = nil
		}
		remaining = append(failed, remaining[len(batch):]...)
		if !killed && len(remaining) < len(committed)/2 {
			killed = true
			leader := streamLeader(t, ctx, b)
			for _, n := range nodes {
				if n.Name() == leader {
					n.Shutdown()
				}
			}
		}
		if len(failed) > 0 {
			time.Sleep(200 * time.Millisecond) // the relay's backoff between rounds
		}
		if ctx.Err() != nil {
			t.Fatalf("%d events still unpublished after 2 minutes", len(remaining))
		}
	}
	position := map[string]int{} // event id → its first place in the stream, from 1
	for i, ev := range bustest.ReadStream(t, b, bus.StreamEvents) {
		if position[ev.ID] == 0 {
			position[ev.ID] = i + 1
		}
	}
	last := map[string]int{}
	for _, ev := range committed {
		p := position[ev.ID]
		if p == 0 {
			t.Fatalf("%s of %s was never stored", ev.Type, ev.Subject)
		}
		if p < last[ev.Subject] {
			t.Errorf("%s of %s stored at %d, before the event committed before it (%d)", ev.Type, ev.Subject, p, last[ev.Subject])
		}
		last[ev.Subject] = p
	}
}

// streamLeader is the name of the EVENTS stream's leader.
func streamLeader(t *testing.T, ctx context.Context, b *bus.Bus) string {
	st, err := b.JetStream().Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("no leader: %v", err)
	}
	return info.Cluster.Leader
}

// r3Bus is a bus asking for three replicas over a connection to urls
// (comma-separated), closed when the test ends.
func r3Bus(t *testing.T, urls string) (*nats.Conn, *bus.Bus) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{Replicas: 3, Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return nc, b
}
