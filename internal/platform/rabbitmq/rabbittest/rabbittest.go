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
	"strings"
	"testing"
)

// URL is the server's URL (ORDERMESH_TEST_RABBITMQ), or "" when the tests
// have none.
func URL() string { return os.Getenv("ORDERMESH_TEST_RABBITMQ") }

// Node is the server's node name, for rabbitmqctl
// (ORDERMESH_TEST_RABBITMQ_NODE, default ordermesh-test@localhost).
func Node() string {
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
	cmd := exec.Command("rabbitmqctl", append([]string{"-q", "-n", Node()}, args...)...)
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
