package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq/rabbittest"
	"github.com/ordermesh/ordermesh/internal/psp"
)

func freeAddr(t *testing.T) string { return bustest.FreeAddr(t) }

// process is `ordermesh run` as a child process.
type process struct {
	t                     *testing.T
	bin, data, addr, nats string
	extra                 []string // more flags
	cmd                   *exec.Cmd
}

// buildBinary builds ordermesh into a temp dir for tests that run it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ordermesh")
	build := exec.Command("go", "build", "-o", bin, "github.com/ordermesh/ordermesh/cmd/ordermesh")
	build.Stderr = bustest.LogWriter(t)
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	return bin
}

func (p *process) start() {
	p.t.Helper()
	authSetup(p.t)
	args := []string{"run", "--data", p.data, "--addr", p.addr,
		"--order-deadline", "5s", "--log-level", "warn", "--jwt-key", testAuth.pem, "--metrics-addr", "127.0.0.1:0"}
	if p.nats != "" {
		args = append(args, "--nats-listen", p.nats)
	}
	args = append(args, p.extra...)
	p.cmd = exec.Command(p.bin, args...)
	out := bustest.LogWriter(p.t)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	bustest.Eventually(p.t, 30*time.Second, "ordermesh to be ready", func() bool {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// natsURL is the process's broker with the credentials `run` made.
func (p *process) natsURL() string {
	pw, err := os.ReadFile(filepath.Join(p.data, NATSPasswordFile))
	if err != nil {
		p.t.Fatal(err)
	}
	return "nats://" + NATSUser + ":" + strings.TrimSpace(string(pw)) + "@" + p.nats
}

func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// TestCrashUnderLoad runs the real binary, places 500 orders from 16
// clients, kills the process with SIGKILL twice at random moments and
// restarts it. Clients retry with the same Idempotency-Key until they get
// an answer. Every accepted order must end completed or cancelled, with
// every invariant holding.
func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	t.Run("nats", func(t *testing.T) {
		p := &process{t: t, bin: bin, data: filepath.Join(t.TempDir(), "data"), addr: freeAddr(t), nats: freeAddr(t)}
		crashUnderLoad(t, p, func(s *stack) {
			nc, err := bus.Dial(t.Context(), p.natsURL(), "crash-test")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			if s.bus, err = bus.New(nc, bus.Config{Logger: bustest.Logger(t)}); err != nil {
				t.Fatal(err)
			}
			s.broker = s.bus
		})
	})
	t.Run("rabbitmq", func(t *testing.T) {
		url := rabbittest.VHost(t)
		p := &process{t: t, bin: bin, data: filepath.Join(t.TempDir(), "data"), addr: freeAddr(t), extra: []string{"--broker", url}}
		crashUnderLoad(t, p, func(s *stack) {
			b, err := rabbitmq.Dial(t.Context(), url, "crash-test", bus.Config{Logger: bustest.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			s.broker = b
		})
	})
}

// crashUnderLoad is TestCrashUnderLoad on p's broker; connect gives the
// stack a client of it for the last checks.
func crashUnderLoad(t *testing.T, p *process, connect func(s *stack)) {
	p.start()
	defer p.kill()

	s := &stack{t: t, base: "http://" + p.addr}
	s.addProduct("CRASH-A", 400)
	s.addProduct("CRASH-B", 150) // runs out: some orders are cancelled out_of_stock

	const total, clients = 500, 16
	load := startMixedLoad(s.base, "crash", [2]string{"CRASH-A", "CRASH-B"}, total, clients, 0)
	for _, at := range []int{50 + rand.IntN(150), 250 + rand.IntN(150)} {
		bustest.Eventually(t, 60*time.Second, fmt.Sprintf("%d orders accepted", at), func() bool { return len(load.Accepted()) >= at })
		p.kill()
		before := load.Accepted()
		t.Logf("killed ordermesh with SIGKILL after %d accepted orders", len(before))
		restart := time.Now()
		p.start()
		ready := time.Since(restart)
		// Recovery: every order accepted before the kill settles, including
		// those whose events the killed process held unacknowledged.
		s.settle(before, 90*time.Second)
		t.Logf("recovery: ready %.1fs after the restart; all %d orders accepted before the kill settled %.1fs after it",
			ready.Seconds(), len(before), time.Since(restart).Seconds())
	}
	load.Wait()
	ids := load.Accepted()

	connect(s)
	got := s.settle(ids, 90*time.Second)
	counts := map[string]int{}
	for _, o := range got {
		counts[o.Status+"/"+o.CancelReason]++
	}
	t.Logf("outcomes: %v", counts)
	s.checkInvariants(got)
	var ledger []inventory.Ledger
	s.do("GET", "/api/admin/inventory/ledger", nil, nil, &ledger)
	t.Logf("ledger: %+v", ledger)
}

// mixedLoad places orders from several clients at once, through crashes:
// three in four paid with tok_ok and one declined, alternating between
// two SKUs, each order with its own Idempotency-Key.
type mixedLoad struct {
	mu       sync.Mutex
	accepted []string
	wg       sync.WaitGroup
}

// startMixedLoad places total orders through the API at base from clients
// goroutines, each pausing between its orders; keys are prefix-i.
func startMixedLoad(base, prefix string, skus [2]string, total, clients int, pause time.Duration) *mixedLoad {
	return startLoad(base, prefix, skus, total, clients, func() { time.Sleep(pause) })
}

// startPacedLoad is startMixedLoad at rate orders a second (as long as
// clients keep up), until total are accepted.
func startPacedLoad(base, prefix string, skus [2]string, total, clients int, rate float64) *mixedLoad {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	l := startLoad(base, prefix, skus, total, clients, func() { <-tick.C })
	go func() { l.Wait(); tick.Stop() }()
	return l
}

// startLoad is startMixedLoad with wait between a client's orders.
func startLoad(base, prefix string, skus [2]string, total, clients int, wait func()) *mixedLoad {
	l := &mixedLoad{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultClient.Transport} // with the admin token
	var next atomic.Int64
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				token := []string{psp.TokenOK, psp.TokenOK, psp.TokenOK, psp.TokenDecline}[i%4]
				body, _ := json.Marshal(orderBody(fmt.Sprintf("c%d", i%37), token, order.ItemRequest{SKU: skus[i%2], Quantity: 1}))
				id := placeUntilAnswered(client, base, fmt.Sprintf("%s-%d", prefix, i), body)
				l.mu.Lock()
				l.accepted = append(l.accepted, id)
				l.mu.Unlock()
				wait()
			}
		}()
	}
	return l
}

// Accepted are the orders accepted so far.
func (l *mixedLoad) Accepted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.accepted)
}

// Wait waits until every order is accepted.
func (l *mixedLoad) Wait() { l.wg.Wait() }

// placeUntilAnswered posts an order, retrying through crashes (connection
// errors, 5xx) with the same key, until it is accepted.
func placeUntilAnswered(c *http.Client, base, key string, body []byte) string {
	for {
		req, _ := http.NewRequest("POST", base+"/api/orders", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var o order.Order
		json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			return o.ID
		}
		// 422 until orders learns the SKU, 409 while a pre-crash claim is
		// fresh, 5xx while restarting: try again.
		time.Sleep(50 * time.Millisecond)
	}
}
