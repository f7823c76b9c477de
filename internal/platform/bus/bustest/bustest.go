// Package bustest starts a real embedded NATS JetStream server for tests,
// in a temporary directory, with the ordermesh streams created.
package bustest

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

// Server is an embedded JetStream server with a TCP listener on loopback
// (so child processes and CLI commands can reach it) and a Bus on it.
type Server struct {
	*bus.Embedded
	Bus *bus.Bus
	Dir string
}

// Start starts a server in a fresh temp dir and stops it when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartIn(tb, tb.TempDir())
}

// StartIn starts a server whose store is dir (reuse dir to restart it).
func StartIn(tb testing.TB, dir string) *Server {
	tb.Helper()
	log := Logger(tb)
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := e.Connect("test")
	if err != nil {
		e.Shutdown()
		tb.Fatal(err)
	}
	b, err := bus.New(nc, bus.Config{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.EnsureStreams(ctx); err != nil {
		tb.Fatal(err)
	}
	s := &Server{Embedded: e, Bus: b, Dir: dir}
	tb.Cleanup(s.Stop)
	return s
}

// Stop closes the connection and shuts the server down; it is idempotent.
func (s *Server) Stop() {
	if s.Bus.Conn().IsClosed() {
		return
	}
	s.Bus.Conn().Close()
	s.Shutdown()
}

// StreamEvents returns every message in stream, in order, as decoded events
// (or failing the test if one cannot be decoded).
func (s *Server) StreamEvents(tb testing.TB, stream string) []bus.Event {
	tb.Helper()
	return ReadStream(tb, s.Bus, stream)
}

// ReadStream returns every message in stream on b's broker (a cluster's
// too), in stored order, as decoded events, failing the test if one cannot
// be decoded.
func ReadStream(tb testing.TB, b *bus.Bus, stream string) []bus.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := b.JetStream().Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []bus.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		ev, err := bus.Decode(raw.Header, raw.Data)
		if err != nil {
			tb.Fatalf("%s seq %d: %v", stream, seq, err)
		}
		out = append(out, ev)
	}
	return out
}

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Within(timeout, cond) {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Within polls cond every 10ms until it holds, and reports whether it did
// before timeout passed: for a caller that has more to say when it did not.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// NewEvent is bus.NewEvent from source "test", failing tb on error.
func NewEvent(tb testing.TB, typ, subject string, data any) bus.Event {
	tb.Helper()
	ev, err := bus.NewEvent(typ, "test", subject, data)
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// handedOut are the ports FreeAddr returned: a port not yet bound by the
// process it was meant for is free again, and must not be returned twice
// (that once made a cluster test's gateway send a service's requests to
// another service).
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// FreeAddr returns a loopback host:port that was free a moment ago, and
// that it has not returned before, for a process the test starts.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	// A port from the kernel's ephemeral range can be taken, between this
	// check and the child process's bind, by any outgoing connection of
	// the tests running in parallel (that failed a cluster test in CI:
	// "address already in use"). Ports below that range are only ever
	// taken by listeners that ask for them.
	low := 32768
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low > 12000 {
		for range 100 {
			addr := "127.0.0.1:" + strconv.Itoa(10000+rand.IntN(low-10000))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				if claim(addr) {
					return addr
				}
			}
		}
	}
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln.Close()
		if addr := ln.Addr().String(); claim(addr) {
			return addr
		}
	}
}

// claim records addr as handed out; false if it already was.
func claim(addr string) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports[addr] {
		return false
	}
	handedOut.ports[addr] = true
	return true
}
