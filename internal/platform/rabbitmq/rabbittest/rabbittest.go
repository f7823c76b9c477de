// Package rabbittest gives tests a RabbitMQ virtual host of their own on
// the test server (.ci/rabbitmq.sh starts it), so that tests running at
// once never share a queue.
package rabbittest

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// URL is the server's URL (ORDERMESH_TEST_RABBITMQ), or "" when the tests
// have none.
func URL() string { return os.Getenv("ORDERMESH_TEST_RABBITMQ") }

// NodeName is the server's node name, for rabbitmqctl
// (ORDERMESH_TEST_RABBITMQ_NODE, default ordermesh-test@localhost).
func NodeName() string {
	if n := os.Getenv("ORDERMESH_TEST_RABBITMQ_NODE"); n != "" {
		return n
	}
	return "ordermesh-test@localhost"
}

// VHost makes a virtual host for t, deleted when t ends, and returns the
// server's URL on it. It skips t when ORDERMESH_TEST_RABBITMQ is unset.
func VHost(t testing.TB) string {
	t.Helper()
	base := URL()
	if base == "" {
		t.Skip("ORDERMESH_TEST_RABBITMQ is not set (a RabbitMQ URL, such as the one .ci/rabbitmq.sh prints)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	vhost := "test-" + hex.EncodeToString(b[:])
	Ctl(t, "add_vhost", vhost)
	t.Cleanup(func() { _ = ctl("delete_vhost", vhost) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("ORDERMESH_TEST_RABBITMQ: %v", err)
	}
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	Ctl(t, "set_permissions", "-p", vhost, user, ".*", ".*", ".*")
	u.Path = "/" + vhost
	return u.String()
}

// Ctl runs rabbitmqctl on the test server with args, failing t if it fails.
func Ctl(t testing.TB, args ...string) {
	t.Helper()
	if err := ctl(args...); err != nil {
		t.Fatal(err)
	}
}

func ctl(args ...string) error {
	cmd := exec.Command("rabbitmqctl", append([]string{"-q", "-n", NodeName()}, args...)...)
	cmd.Env = append(os.Environ(), "ERL_EPMD_ADDRESS=127.0.0.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &ctlError{args: args, out: strings.TrimSpace(string(out)), err: err}
	}
	return nil
}

type ctlError struct {
	args []string
	out  string
	err  error
}

func (e *ctlError) Error() string {
	return "rabbitmqctl " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.out
}

// Node is a RabbitMQ node of a test's own, which it may stop and start
// again (its data survives).
type Node struct {
	URL       string
	t         testing.TB
	env       []string
	script    string
	name, dir string
}

// StartNode starts a RabbitMQ node for t alone, with .ci/rabbitmq.sh, on
// a free loopback port, and stops it and removes its data when t ends. It
// skips t when ORDERMESH_TEST_RABBITMQ is unset (no server installed).
func StartNode(t testing.TB, port int) *Node {
	t.Helper()
	if URL() == "" {
		t.Skip("ORDERMESH_TEST_RABBITMQ is not set (a RabbitMQ server is not installed)")
	}
	_, file, _, _ := runtime.Caller(0)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	n := &Node{t: t, script: filepath.Join(filepath.Dir(file), "..", "..", "..", "..", ".ci", "rabbitmq.sh"),
		name: "ordermesh-" + id + "@localhost", dir: "/var/tmp/ordermesh-rabbitmq-" + id}
	n.env = append(os.Environ(), "ORDERMESH_RABBIT_NODE="+n.name, "ORDERMESH_RABBIT_BASE="+n.dir, "ORDERMESH_RABBIT_PORT="+strconv.Itoa(port))
	t.Cleanup(func() {
		n.run("stop")
		_ = os.RemoveAll(n.dir)
	})
	n.URL = strings.TrimSpace(n.run())
	return n
}

// Stop stops the node (as an operator would) and waits until it has.
func (n *Node) Stop() { n.t.Helper(); n.run("stop") }

// Start starts the stopped node again and waits until it answers.
func (n *Node) Start() { n.t.Helper(); n.run() }

func (n *Node) run(args ...string) string {
	n.t.Helper()
	cmd := exec.Command(n.script, args...)
	cmd.Env = n.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("%s %s: %v: %s", n.script, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
