package app

import (
	"flag"
	"maps"
	"slices"
	"strings"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// components are the services ordermesh can run: `run` starts them all,
// in this order, and `serve NAME` one. Each context exports its component
// (name, tables, routes, flags, start), bound here to its settings in c;
// adding a service is one line here. n is the node that runs them; nil
// reads only what needs none (names, tables, routes, flags).
func (c *Config) components(n *Node) []component.Component {
	return []component.Component{
		order.Component(&c.Orders),
		inventory.Component,
		payment.Component(&c.Payments),
		shipping.Component,
		notification.Component(&c.Webhooks),
		psp.Component(&c.PSP),
		c.gatewayComponent(n),
	}
}

// registry is the components read without a node.
var registry = (&Config{}).components(nil)

// Services lists what `ordermesh serve` can run, in start order.
var Services = func() []string {
	names := make([]string, len(registry))
	for i, c := range registry {
		names[i] = c.Name
	}
	return names
}()

// routes is the gateway's route table: every component's API.
var routes = func() *gateway.Routes {
	byService := map[string][]httpx.Route{}
	for _, c := range registry {
		if c.API != nil {
			byService[c.Name] = c.API()
		}
	}
	return gateway.NewRoutes(byService)
}()

// componentNamed returns the component called name.
func componentNamed(name string) (component.Component, bool) {
	for _, c := range registry {
		if c.Name == name {
			return c, true
		}
	}
	return component.Component{}, false
}

// isEdge reports whether service is the edge (the gateway).
func isEdge(service string) bool {
	c, _ := componentNamed(service)
	return c.Edge
}

// edgeService is the edge's name.
func edgeService() string {
	for _, c := range registry {
		if c.Edge {
			return c.Name
		}
	}
	return ""
}

// replays reports whether service's broker identity may replay.
func replays(service string) bool {
	c, _ := componentNamed(service)
	return c.Replays
}

// upstreamServices are the services an edge hands requests to: every one
// but the edge.
func upstreamServices() []string {
	return slices.DeleteFunc(slices.Clone(Services), isEdge)
}

// emits reports whether service publishes events, so has an outbox to relay.
func emits(service string) bool { return len(event.Published(service)) > 0 }

// runsOutside reports whether n runs a system outside ordermesh (the
// provider simulator).
func (n *Node) runsOutside() bool {
	return slices.ContainsFunc(n.cfg.Services, func(s string) bool {
		c, _ := componentNamed(s)
		return c.Outside
	})
}

// optionalDB reports whether service may run without a database.
func optionalDB(service string) bool {
	c, _ := componentNamed(service)
	return c.OptionalDB
}

// migrationsOf is everything service's database needs.
func migrationsOf(service string) []sqldb.Migrations {
	sets := platformMigrations()
	if c, ok := componentNamed(service); ok {
		sets = append(sets, c.Migrations())
	}
	return sets
}

// checkFlagsOf refuses a flag given to `serve service` on the command line
// that belongs to other services only, naming who takes it.
func checkFlagsOf(service string, given map[string]bool) error {
	owners := flagOwners()
	for _, f := range slices.Sorted(maps.Keys(given)) {
		if o := owners[f]; o != nil && !slices.Contains(o, service) {
			return usagef("--%s is for serve %s, not serve %s", f, strings.Join(o, " and serve "), service)
		}
	}
	return nil
}

// flagOwners maps each flag a component declares to the components
// (services) that declare it.
func flagOwners() map[string][]string {
	owners := map[string][]string{}
	// A fresh configuration: reading a component's flags binds them (and
	// their defaults) to its settings, which registry's must not share.
	for _, c := range (&Config{}).components(nil) {
		for _, f := range c.FlagNames() {
			owners[f] = append(owners[f], c.Name)
		}
	}
	return owners
}

// flagsOfService says whether a flag of `serve` applies to service: a
// flag no component declares applies to every service, unless its
// description starts with another service's name ("gateway: …").
func flagsOfService(service string) func(*flag.Flag) bool {
	owners := flagOwners()
	return func(f *flag.Flag) bool {
		if o := owners[f.Name]; o != nil {
			return slices.Contains(o, service)
		}
		for _, other := range Services {
			if other != service && strings.HasPrefix(f.Usage, other+":") {
				return false
			}
		}
		return true
	}
}
