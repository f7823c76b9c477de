package bus

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS JetStream server running inside this process with a
// file store, reached through an in-process connection.
type Embedded struct {
	srv            *server.Server
	user, password string
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its files (e.g. DATA/nats).
	StoreDir string
	// Listen, when set (host:port, port 0 = any free port), also opens a TCP
	// listener so other processes (ordermesh dlq, tests) can connect.
	// Empty means in-process connections only.
	Listen string
	// Name is the server's name (unique in a cluster); empty means
	// "ordermesh".
	Name string
	// Cluster, when set, joins this server to a JetStream cluster: its
	// name, this server's route listener (host:port) and every member's
	// route URL (nats-route://host:port), itself included.
	Cluster       string
	ClusterListen string
	Routes        []string
	// User and Password, when set, are required of every client, the
	// in-process connection included: the TCP port is then no open door
	// to publish forged events.
	User, Password string
	// Identities are the services' own users, each allowed to publish
	// only its own events (see Identity). User stays the administrative
	// user, allowed everything.
	Identities []Identity
}

// StartEmbedded starts the server and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "ordermesh",
		JetStream:  true,
		StoreDir:   filepath.Clean(cfg.StoreDir),
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		// Room for batched async publishes from the outbox relay.
		MaxPending: 256 << 20,
	}
	if cfg.Listen != "" {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("--nats-listen %q: want host:port: %w", cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("--nats-listen %q: port must be 0-65535", cfg.Listen)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	authOptions(cfg, opts)
	if cfg.Name != "" {
		opts.ServerName = cfg.Name
	}
	if cfg.Cluster != "" {
		if err := clusterOptions(cfg, opts); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	go srv.Start()
	if cfg.Cluster != "" {
		// A cluster member is ready once it accepts clients; JetStream
		// comes up when enough members have joined (see EnsureStreams).
		if !srv.ReadyForConnections(30 * time.Second) {
			srv.Shutdown()
			return nil, fmt.Errorf("nats %s did not become ready within 30s", opts.ServerName)
		}
		return &Embedded{srv: srv, user: cfg.User, password: cfg.Password}, nil
	}
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats did not become ready within 30s (store %s)", cfg.StoreDir)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats started without JetStream (store %s)", cfg.StoreDir)
	}
	return &Embedded{srv: srv, user: cfg.User, password: cfg.Password}, nil
}

// authOptions sets who may connect: cfg's user, and its identities with
// their permissions.
func authOptions(cfg EmbeddedConfig, opts *server.Options) {
	if len(cfg.Identities) == 0 {
		opts.Username, opts.Password = cfg.User, cfg.Password
		return
	}
	opts.Users = []*server.User{{Username: cfg.User, Password: cfg.Password}}
	for _, id := range cfg.Identities {
		opts.Users = append(opts.Users, id.user())
	}
}

// clusterOptions sets opts to join cfg's cluster.
func clusterOptions(cfg EmbeddedConfig, opts *server.Options) error {
	host, portStr, err := net.SplitHostPort(cfg.ClusterListen)
	if err != nil {
		return fmt.Errorf("cluster listen %q: want host:port: %w", cfg.ClusterListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster listen %q: %w", cfg.ClusterListen, err)
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.Cluster, Host: host, Port: port}
	for _, r := range cfg.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("route %q: %w", r, err)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// Connect opens an in-process client connection to the server.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	return e.ConnectAs(name, e.user, e.password)
}

// ConnectAs opens an in-process client connection as user.
func (e *Embedded) ConnectAs(name, user, password string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1), nats.UserInfo(user, password))
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats as %s: %w", user, err)
	}
	return nc, nil
}

// ClientURL is the TCP URL of the server, without credentials, or "" when
// it does not listen.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// ClientURLWithCredentials is ClientURL with the user and password in it,
// as nats.Connect and --nats accept it.
func (e *Embedded) ClientURLWithCredentials() string {
	u := e.ClientURL()
	if u == "" || e.user == "" {
		return u
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.User = url.UserPassword(e.user, e.password)
	return parsed.String()
}

// Shutdown stops the server and waits for it to finish.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Name is the server's name (its cluster member name).
func (e *Embedded) Name() string { return e.srv.Name() }
