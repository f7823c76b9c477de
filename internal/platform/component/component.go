// Package component is the shape every ordermesh service has: a name, its
// tables, its HTTP API, its own flags and a Start that mounts its routes and
// starts its consumers and background loops on what the node gives it. A
// context exports one Component; the app's registry lists them, one line
// each, and `run` starts them all while `serve NAME` starts one.
package component

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Component is one service ordermesh can run.
type Component struct {
	Name string
	// Migrations are its tables, beside the platform's outbox and inbox.
	Migrations func() sqldb.Migrations
	// OptionalDB: it may run without a database.
	OptionalDB bool
	// API is its HTTP API with each route's policy, read without a running
	// service: the gateway's route table is built from every component's.
	API func() []httpx.Route
	// Settings are its own flags (nil: none).
	Settings Settings
	// Shared names the node's flags it reads beside its own (secrets it
	// shares with another component): `serve` refuses a flag on the command
	// line that no component it runs reads.
	Shared []string
	// Edge: it is the edge, which takes the public requests and hands
	// them to the services (in one process, or to their instances as
	// upstreams). It is no upstream itself, verifies no internal identity
	// (it signs one), and may run without a broker when its upstreams are
	// static.
	Edge bool
	// Replays: its broker identity may read any stream and replay dead
	// letters (the admin API's).
	Replays bool
	// Outside: a system outside ordermesh (the payment provider's
	// simulator). In one process it answers on a loopback listener of its
	// own and shares its credentials with the service that calls it.
	Outside bool
	// ServeNeeds says what `serve NAME` lacks that `run` provides (the
	// provider's URL and credentials): nil when nothing.
	ServeNeeds func() error
	// Start builds it on env's store, mounts its routes on env.Mux and
	// starts its consumers and background loops.
	Start func(env *Env) error
}

// Settings are a component's own flags, bound to its configuration.
type Settings interface {
	// Flags declares them on fs with their defaults.
	Flags(fs *flag.FlagSet)
	// Check says what is wrong with them, naming the flag.
	Check() error
}

// FlagNames are the flags c reads: its own and the shared ones.
func (c Component) FlagNames() []string {
	names := append([]string(nil), c.Shared...)
	if c.Settings != nil {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Settings.Flags(fs)
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	}
	return names
}

// Env is what a node gives a component's Start.
type Env struct {
	// Ctx bounds the setup; Run ends the background loops.
	Ctx, Run context.Context
	// Mux takes its routes (httpx.Mount).
	Mux *http.ServeMux
	// DB and Outbox are its store: the outbox's rows are published by the
	// node's relay.
	DB     *sqldb.DB
	Outbox *outbox.Outbox
	Bus    bus.Broker
	Log    *slog.Logger
	// Metrics takes its collectors.
	Metrics prometheus.Registerer
	// URL is the node's own base URL.
	URL string

	// Node's hooks, set by the node.
	Hooks Hooks
}

// Hooks are what the node does for a component.
type Hooks struct {
	// Consume starts a consumer the node stops at shutdown.
	Consume func(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) (bus.Subscription, error)
	// Loops counts the background loops the node waits for at shutdown.
	Loops *sync.WaitGroup
	// OnClose runs f first at shutdown.
	OnClose func(f func())
	// ServeOutside serves the API of a system outside ordermesh (the
	// provider simulator's): on a loopback listener of its own in one
	// process, else on the node's port.
	ServeOutside func(h http.Handler)
}

// Consume starts a consumer of cfg's events with h (during setup).
func (e *Env) Consume(cfg bus.ConsumerConfig, h bus.BatchHandler) (bus.Subscription, error) {
	return e.Hooks.Consume(e.Ctx, cfg, h)
}

// Go runs loop in the background until Run ends; the node waits for it
// at shutdown.
func (e *Env) Go(loop func(ctx context.Context)) {
	e.Hooks.Loops.Add(1)
	go func() {
		defer e.Hooks.Loops.Done()
		loop(e.Run)
	}()
}

// OnClose runs f first at the node's shutdown.
func (e *Env) OnClose(f func()) { e.Hooks.OnClose(f) }

// ServeOutside serves h, the API of a system outside ordermesh.
func (e *Env) ServeOutside(h http.Handler) { e.Hooks.ServeOutside(h) }

// StringVar declares a string flag that more than one component reads (a
// credential two of them share): declared again, the flag sets p too.
func StringVar(fs *flag.FlagSet, p *string, name, usage string) {
	if f := fs.Lookup(name); f != nil {
		*p = f.Value.String()
		f.Value = tee{f.Value, (*stringValue)(p)}
		return
	}
	fs.StringVar(p, name, "", usage)
}

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }

// tee is a flag two components read: setting it sets both.
type tee [2]flag.Value

func (t tee) Set(v string) error {
	if err := t[0].Set(v); err != nil {
		return err
	}
	return t[1].Set(v)
}

func (t tee) String() string { return t[0].String() }
