package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// proxyTo returns a gateway server in front of one upstream server.
func proxyTo(t *testing.T, upstream *httptest.Server) *httptest.Server {
	t.Helper()
	in, err := NewInstance(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	up, err := NewUpstream("orders", "", []*Instance{in})
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(up.Handler())
	t.Cleanup(gw.Close)
	return gw
}

func fetch(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestProxyKeepsConnectionsAlive: sequential requests reuse one upstream
// connection, bodies of every framing arrive whole, and POST bodies go
// through.
func TestProxyKeepsConnectionsAlive(t *testing.T) {
	var conns atomic.Int64
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s", r.Method, body)
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("fixed"))
		}
	}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	upstream.Start()
	defer upstream.Close()
	gw := proxyTo(t, upstream)
	for i := range 30 {
		path, want, wantCode := []string{"/fixed", "/chunked", "/empty"}[i%3], []string{"fixed", "part one, part two", ""}[i%3], []int{200, 200, 204}[i%3]
		if code, body := fetch(t, gw.URL+path); code != wantCode || body != want {
			t.Fatalf("GET %s = %d %q, want %d %q", path, code, body, wantCode, want)
		}
	}
	resp, err := http.Post(gw.URL+"/echo", "text/plain", strings.NewReader("a body"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST a body" {
		t.Fatalf("POST /echo = %q", body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("31 sequential requests opened %d upstream connections, want 1", n)
	}
}

// TestProxyRetriesAConnectionTheServerClosed: an upstream that closes a
// kept-alive connection without saying so costs a GET nothing: it goes
// out again on a fresh connection.
func TestProxyRetriesAConnectionTheServerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A bare HTTP/1.1 server that answers one request per connection as if
	// keeping it alive, then closes it.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
			}()
		}
	}()
	gw := proxyTo(t, &httptest.Server{URL: "http://" + ln.Addr().String()})
	for i := range 5 {
		if code, body := fetch(t, gw.URL+"/x"); code != 200 || body != "ok" {
			t.Fatalf("GET %d = %d %q, want 200 ok", i, code, body)
		}
	}
}

// TestProxyStreamsAndStopsWithTheCaller: an event stream reaches the
// caller as the upstream writes it, and a caller leaving closes the
// upstream request.
func TestProxyStreamsAndStopsWithTheCaller(t *testing.T) {
	gone := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		if r.URL.Path != "/again" { // the test's second request ends here too, later
			close(gone)
		}
	}))
	defer upstream.Close()
	gw := proxyTo(t, upstream)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL+"/api/orders/x/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request is still open 10s after the caller left")
	}
	// The upstream still serves new requests through the gateway.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	req, _ = http.NewRequestWithContext(ctx2, "GET", gw.URL+"/again", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a stream: %v %v", resp, err)
	}
	resp.Body.Close()
}
