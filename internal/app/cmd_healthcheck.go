package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// cmdHealthcheck asks a process's /readyz whether it is ready: exit 0 on
// 200, 1 otherwise. Container images without a shell or curl (the
// distroless one in deploy/) use it as their healthcheck.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", "Usage: ordermesh healthcheck [--url URL]\n\nAsks a running ordermesh process whether it is ready (its /readyz): exit 0 when it\nanswers 200, 1 when it answers anything else or cannot be reached.", stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "the process's readiness URL")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if !strings.HasPrefix(*url, "http://") && !strings.HasPrefix(*url, "https://") {
		return usagef("--url %q: give an http:// or https:// URL, such as http://127.0.0.1:8080/readyz", *url)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usagef("--url: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %s: %s", *url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
