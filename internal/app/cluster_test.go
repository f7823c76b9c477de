package app

// The scale-out fault test: a three-node JetStream cluster, PostgreSQL, and
// every service as its own `ordermesh serve` process (orders, inventory
// and payments twice), with the EVENTS stream leader and an instance of
// each doubled service killed with SIGKILL and restarted while orders flow.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb/sqldbtest"
)

// child is a long-running child process that can be killed and restarted.
type child struct {
	t    *testing.T
	name string
	bin  string
	args []string
	cmd  *exec.Cmd
	// exited is closed when the process has ended, with its error in err.
	exited chan struct{}
	err    error
	// ready, when set, is polled after start until it answers 200 and,
	// when store is set too, names that store among its checks: the
	// process answering is this one, not another that holds the port.
	ready, store string
}

func (c *child) start() {
	c.t.Helper()
	c.cmd = exec.Command(c.bin, c.args...)
	out := bustest.LogWriter(c.t)
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", c.name, err)
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		c.err = cmd.Wait()
		close(exited)
	}(c.cmd, c.exited)
	if c.ready == "" {
		return
	}
	bustest.Eventually(c.t, 60*time.Second, c.name+" to be ready", func() bool {
		select {
		case <-c.exited:
			c.t.Fatalf("%s exited before it was ready: %v", c.name, c.err)
		default:
		}
		resp, err := http.Get(c.ready)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var checks map[string]string
		if json.NewDecoder(resp.Body).Decode(&checks) != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		if _, ok := checks[c.store]; c.store != "" && !ok {
			c.t.Fatalf("%s: another process answers on its address (its /readyz checks %v)", c.name, checks)
		}
		return true
	})
}

// signal sends sig to the child (SIGSTOP pauses it, SIGCONT resumes it).
func (c *child) signal(sig syscall.Signal) {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(sig)
	}
}

func (c *child) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
}

// natsCluster is three nats-server processes built from the module in
// go.mod, clustered on loopback, with a user and password.
type natsCluster struct {
	nodes []*child
	urls  []string
	user  string
	pass  string
	// secrets is what `setup --identities` wrote: each service's broker
	// password (the brokers know every identity) and the payment-token keys.
	secrets string
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Stderr = bustest.LogWriter(t)
	if err := build.Run(); err != nil {
		t.Fatalf("build nats-server: %v", err)
	}
	c := &natsCluster{user: NATSUser, secrets: t.TempDir()}
	if _, err := writeIdentities(c.secrets); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(c.secrets, NATSIdentityFile(NATSUser)))
	if err != nil {
		t.Fatal(err)
	}
	c.pass = strings.TrimSpace(string(raw))
	conf := filepath.Join(c.secrets, "nats.conf")
	if err := os.WriteFile(conf, []byte("include ./"+NATSAuthFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clients, routes := make([]string, 3), make([]string, 3)
	for i := range 3 {
		clients[i], routes[i] = freeAddr(t), freeAddr(t)
	}
	dir := t.TempDir()
	for i := range 3 {
		host, port, _ := strings.Cut(clients[i], ":")
		_, cport, _ := strings.Cut(routes[i], ":")
		var others []string
		for _, r := range routes {
			others = append(others, "nats://"+r)
		}
		n := &child{t: t, name: fmt.Sprintf("nats n%d", i), bin: bin, args: []string{
			"-js", "-sd", filepath.Join(dir, fmt.Sprint(i)), "-n", fmt.Sprintf("n%d", i), "-a", host, "-p", port,
			"--cluster_name", "ordermesh-test", "--cluster", "nats://" + host + ":" + cport, "--routes", strings.Join(others, ","),
			"-c", conf,
		}}
		n.start()
		t.Cleanup(n.kill)
		c.nodes = append(c.nodes, n)
		c.urls = append(c.urls, "nats://"+clients[i])
	}
	return c
}

func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

// connect opens a client connection to the cluster.
func (c *natsCluster) connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := bus.Dial(context.Background(), c.url(), "cluster-test", nats.UserInfo(c.user, c.pass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// leader returns the node leading the EVENTS stream now.
func (c *natsCluster) leader(t *testing.T, b *bus.Bus) *child {
	t.Helper()
	var name string
	bustest.Eventually(t, 30*time.Second, "an EVENTS leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := b.JetStream().Stream(ctx, bus.StreamEvents)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		name = info.Cluster.Leader
		return name != ""
	})
	for _, n := range c.nodes {
		if n.name == "nats "+name {
			return n
		}
	}
	t.Fatalf("leader %q is none of the nodes", name)
	return nil
}

// TestScaledOutClusterSurvivesFaults: ordermesh scaled out on a JetStream
// cluster and PostgreSQL, with partitioned consumers, survives SIGKILL of
// the EVENTS stream leader and of one instance each of orders, inventory
// and payments while orders flow: every order ends, and every invariant
// holds. It reports how long each recovery took.
func TestScaledOutClusterSurvivesFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a dozen processes")
	}
	base := os.Getenv(sqldbtest.PostgresEnv)
	if base == "" {
		t.Skip("needs " + sqldbtest.PostgresEnv)
	}
	authSetup(t)
	cluster := startNATSCluster(t)
	bin := buildBinary(t)

	// Streams first, as a deployment would: it waits for the cluster.
	setup := exec.Command(bin, "setup", "--nats", cluster.url(), "--nats-user", cluster.user, "--nats-password", cluster.pass, "--replicas", "3")
	if out, err := setup.CombinedOutput(); err != nil || !strings.Contains(string(out), "EVENTS: 3 replica(s)") {
		t.Fatalf("ordermesh setup: %v\n%s", err, out)
	}

	secret := strings.Repeat("0123456789abcdef", 4)
	const pspKey = "cluster-test-provider-key"
	common := []string{"--nats", cluster.url(), "--internal-secret", secret, "--log-level", "warn"}
	dbs := map[string]string{} // one database (schema) per service, shared by its instances
	serve := func(svc string, extra ...string) *child {
		addr := freeAddr(t)
		// Each service as its own broker user, as a deployment runs them.
		args := append([]string{"serve", svc, "--addr", addr, "--nats-user", svc,
			"--nats-password-file", filepath.Join(cluster.secrets, NATSIdentityFile(svc))}, common...)
		if svc != "gateway" {
			if dbs[svc] == "" {
				dbs[svc] = sqldbtest.PostgresSchema(t, base)
			}
			args = append(args, "--db", dbs[svc])
		}
		c := &child{t: t, name: svc + "@" + addr, bin: bin, args: append(args, extra...), ready: "http://" + addr + "/readyz"}
		if svc != "gateway" {
			c.store = svc + "_db"
		}
		return c
	}
	pspNode := serve("psp", "--psp-api-key", pspKey)
	pspNode.start()
	pspURL := "http://" + strings.TrimSuffix(strings.TrimPrefix(pspNode.ready, "http://"), "/readyz")
	var all []*child
	instances := map[string][]*child{}
	for _, svc := range []string{"orders", "orders", "inventory", "inventory", "payments", "payments", "shipping", "notifications"} {
		var extra []string
		switch svc {
		case "orders":
			extra = []string{"--order-deadline", "20s", "--payment-token-public-key-file", filepath.Join(cluster.secrets, PaymentTokenPublicKeyFile)}
		case "payments":
			extra = []string{"--psp-url", pspURL, "--psp-api-key", pspKey, "--payment-token-key-file", filepath.Join(cluster.secrets, PaymentTokenKeyFile)}
		}
		c := serve(svc, extra...)
		instances[svc] = append(instances[svc], c)
		all = append(all, c)
	}
	for _, c := range all {
		c.start()
		t.Cleanup(c.kill)
	}
	t.Cleanup(pspNode.kill)
	urls := func(svc string) string {
		var out []string
		for _, c := range instances[svc] {
			out = append(out, strings.TrimSuffix(c.ready, "/readyz"))
		}
		if svc == "psp" {
			out = []string{pspURL}
		}
		return svc + "=" + strings.Join(out, ",")
	}
	gw := serve("gateway", "--jwt-key", testAuth.pem, "--upstream", urls("orders"), "--upstream", urls("inventory"),
		"--upstream", urls("payments"), "--upstream", urls("notifications"), "--upstream", urls("psp"))
	gw.start()
	t.Cleanup(gw.kill)

	nc := cluster.connect(t)
	b, err := bus.New(nc, bus.Config{Logger: bustest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, bus: b, base: strings.TrimSuffix(gw.ready, "/readyz")}
	// ORDERMESH_CLUSTER_ORDERS makes the run longer, and
	// ORDERMESH_CLUSTER_RATE (orders a second) paces it (bench/faults).
	total, clients := 240, 8
	if n, err := strconv.Atoi(os.Getenv("ORDERMESH_CLUSTER_ORDERS")); err == nil && n >= 40 {
		total = n
	}
	s.addProduct("CLUSTER-A", total) // enough for every order
	s.addProduct("CLUSTER-B", 40)    // runs out: some orders are cancelled out_of_stock
	rate, _ := strconv.ParseFloat(os.Getenv("ORDERMESH_CLUSTER_RATE"), 64)
	if rate > 0 {
		clients = max(clients, int(rate/2))
	}
	start := func(prefix string, total, clients int) *mixedLoad {
		if rate > 0 {
			return startPacedLoad(s.base, prefix, [2]string{"CLUSTER-A", "CLUSTER-B"}, total, clients, rate)
		}
		return startMixedLoad(s.base, prefix, [2]string{"CLUSTER-A", "CLUSTER-B"}, total, clients, 20*time.Millisecond)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultClient.Transport}
	began := time.Now()
	load := start("cluster", total, clients)
	snapshot := load.Accepted
	waitAccepted := func(n int) {
		bustest.Eventually(t, 120*time.Second, fmt.Sprintf("%d orders accepted", n), func() bool { return len(snapshot()) >= n })
	}
	// Each fault's recovery: how long after it every order accepted before
	// it had settled, watched in the background while the run goes on.
	type recovery struct {
		what    string
		orders  int
		took    time.Duration
		settled bool
	}
	var recoveries []*recovery
	var watchers sync.WaitGroup
	watch := func(what string) {
		r := &recovery{what: what}
		recoveries = append(recoveries, r)
		ids, at := snapshot(), time.Now()
		r.orders = len(ids)
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			r.settled = bustest.Within(180*time.Second, func() bool {
				for len(ids) > 0 && orderSettled(client, s.base, ids[0]) {
					ids = ids[1:]
				}
				return len(ids) == 0
			})
			r.took = time.Since(at)
		}()
	}

	waitAccepted(total / 5)
	leader := cluster.leader(t, b)
	leader.kill()
	t.Logf("killed the EVENTS leader (%s) after %d accepted orders", leader.name, len(snapshot()))
	watch("SIGKILL of the EVENTS stream leader")

	waitAccepted(2 * total / 5)
	victims := []*child{instances["orders"][0], instances["inventory"][0], instances["payments"][0]}
	for _, v := range victims {
		v.kill()
	}
	t.Logf("killed %s, %s and %s after %d accepted orders", victims[0].name, victims[1].name, victims[2].name, len(snapshot()))
	watch("SIGKILL of one orders, inventory and payments instance")

	waitAccepted(3 * total / 5)
	leader.start()
	t.Logf("restarted %s after %d accepted orders", leader.name, len(snapshot()))
	watch("the broker node's restart")

	waitAccepted(4 * total / 5)
	for _, v := range victims {
		v.start()
	}
	t.Logf("restarted the instances after %d accepted orders", len(snapshot()))
	watch("the instances' restart")

	load.Wait()

	t.Logf("first wave: %d orders accepted in %.1fs (%.1f/s)", total, time.Since(began).Seconds(), float64(total)/time.Since(began).Seconds())

	// A paused instance is as safe as a dead one: with a second wave of
	// orders flowing, one inventory instance stops (SIGSTOP) with its
	// messages in hand for 10 s, past PinnedTTL, and the broker pins the
	// other to its partitions; when it resumes, both may handle one
	// order's events, and the database serializes them.
	paused := instances["inventory"][1]
	wave := start("paused", total/4, clients/2)
	bustest.Eventually(t, 60*time.Second, "the second wave under way", func() bool { return len(wave.Accepted()) >= total/20 })
	paused.signal(syscall.SIGSTOP)
	t.Logf("paused %s (SIGSTOP) for 10s after %d orders of the second wave", paused.name, len(wave.Accepted()))
	pausedAt, before := time.Now(), len(snapshot())+len(wave.Accepted())
	resume := time.AfterFunc(10*time.Second, func() { paused.signal(syscall.SIGCONT) }) // the fault's length
	t.Cleanup(func() {
		if resume.Stop() {
			paused.signal(syscall.SIGCONT)
		}
	})
	wave.Wait()
	accepted := append(snapshot(), wave.Accepted()...)
	pauseSettled := bustest.Within(180*time.Second, func() bool {
		for _, id := range accepted[:before] {
			if !orderSettled(client, s.base, id) {
				return false
			}
		}
		return true
	})
	recoveries = append(recoveries, &recovery{what: "SIGSTOP of an inventory instance for 10 s", orders: before, took: time.Since(pausedAt), settled: pauseSettled})
	watchers.Wait()
	for _, r := range recoveries {
		if !r.settled {
			t.Errorf("after %s, the %d orders accepted before it had not all settled after %s", r.what, r.orders, r.took.Round(time.Second))
			continue
		}
		t.Logf("recovery from %s: the %d orders accepted before it all settled %.1fs after it", r.what, r.orders, r.took.Seconds())
	}
	got := s.settle(accepted, 120*time.Second)
	counts := map[string]int{}
	for _, o := range got {
		counts[o.Status+"/"+o.CancelReason]++
	}
	t.Logf("outcomes of %d orders: %v", len(got), counts)
	s.checkInvariants(got)
	checkCommitOrder(t, s.bus, got)
}

// checkCommitOrder reads the EVENTS stream and checks that each order's
// own events are stored in the order the orders service committed them:
// order.placed first, order.completed or order.cancelled last.
func checkCommitOrder(t *testing.T, b *bus.Bus, orders map[string]order.Order) {
	t.Helper()
	type seen struct{ placed, first, terminal, last int }
	at := map[string]*seen{}
	for i, ev := range bustest.ReadStream(t, b, bus.StreamEvents) {
		if _, ok := orders[ev.Subject]; !ok || !strings.HasPrefix(ev.Type, "order.") {
			continue
		}
		p := at[ev.Subject]
		if p == nil {
			p = &seen{placed: -1, first: i}
			at[ev.Subject] = p
		}
		if ev.Type == event.OrderPlaced && p.placed < 0 {
			p.placed = i
		}
		if ev.Type == event.OrderCompleted || ev.Type == event.OrderCancelled {
			p.terminal = i
		}
		p.last = i
	}
	bad := 0
	for id, p := range at {
		if p.placed != p.first || p.terminal != p.last {
			bad++
			if bad <= 5 {
				t.Errorf("order %s: its events are not stored in commit order (order.placed at %d, its first event at %d; its end at %d, its last event at %d)",
					id, p.placed, p.first, p.terminal, p.last)
			}
		}
	}
	t.Logf("commit order in the stream: %d orders checked, %d out of order", len(at), bad)
}

// orderSettled reports whether order id is completed or cancelled.
func orderSettled(c *http.Client, base, id string) bool {
	resp, err := c.Get(base + "/api/orders/" + id)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var o order.Order
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&o) == nil && o.Terminal()
}
