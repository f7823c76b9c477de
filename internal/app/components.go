package app

import (
	"slices"
	"strings"

	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// component is one service ordermesh can run: `run` starts them all, in
// this order, and `serve NAME` one. Adding a service is one entry here
// (its routes reach the gateway's table through api).
type component struct {
	name string
	// migrations are its tables, beside the platform's outbox and inbox.
	migrations func() sqldb.Migrations
	// optionalDB: it may run without a database (the gateway keeps only
	// API keys in one, and accepts none without it).
	optionalDB bool
	// start builds it on its store, mounts its routes and starts its
	// consumers and background loops.
	start func(n *Node, s starting) error
	// api is its HTTP API with each route's policy, read without a running
	// service: the gateway's route table is built from every component's.
	api func() []httpx.Route
	// flags are the `serve` flags only it reads: `serve` refuses one of
	// them given on the command line to another service. (The environment
	// may hold them for all: one file often serves every service.)
	flags []string
}

var components = []component{
	{name: "orders", migrations: order.Migrations, start: (*Node).startOrders, api: (*order.Service)(nil).API,
		flags: []string{"order-deadline"}},
	{name: "inventory", migrations: inventory.Migrations, start: (*Node).startInventory, api: (*inventory.Service)(nil).API},
	{name: "payments", migrations: payment.Migrations, start: (*Node).startPayments, api: (*payment.Service)(nil).API,
		flags: []string{"psp-url", "psp-api-key", "psp-webhook-secret"}},
	{name: "shipping", migrations: shipping.Migrations, start: (*Node).startShipping},
	{name: "notifications", migrations: notification.Migrations, start: (*Node).startNotifications, api: func() []httpx.Route {
		return append((*notification.Service)(nil).API(), (*webhook.Service)(nil).API()...)
	},
		flags: []string{"webhook-allow-private", "webhook-disable-after", "webhook-schedule", "webhook-secret-grace"}},
	{name: "psp", migrations: psp.Migrations, start: (*Node).startPSP, api: (*psp.Server)(nil).API,
		flags: []string{"psp-async", "psp-error-rate", "psp-latency", "psp-timeout-rate", "psp-notify-url", "psp-api-key", "psp-webhook-secret"}},
	{name: "gateway", migrations: gateway.Migrations, optionalDB: true, start: (*Node).startGateway, api: (*Node)(nil).gatewayAPI,
		flags: []string{"cache-ttl", "concurrency-limit", "hash-key", "jwks-url", "jwt-audience", "jwt-issuer", "jwt-key", "jwt-secret",
			"lb", "rate-limit", "rate-limit-on-error", "redis", "route-timeout", "upstream", "upstream-config"}},
}

// Services lists what `ordermesh serve` can run, in start order.
var Services = func() []string {
	names := make([]string, len(components))
	for i, c := range components {
		names[i] = c.name
	}
	return names
}()

// routes is the gateway's route table: every component's API.
var routes = func() *gateway.Routes {
	byService := map[string][]httpx.Route{}
	for _, c := range components {
		if c.api != nil {
			byService[c.name] = c.api()
		}
	}
	return gateway.NewRoutes(byService)
}()

// componentNamed returns the component called name.
func componentNamed(name string) (component, bool) {
	for _, c := range components {
		if c.name == name {
			return c, true
		}
	}
	return component{}, false
}

// optionalDB reports whether service may run without a database.
func optionalDB(service string) bool {
	c, _ := componentNamed(service)
	return c.optionalDB
}

// migrationsOf is everything service's database needs.
func migrationsOf(service string) []sqldb.Migrations {
	sets := platformMigrations()
	if c, ok := componentNamed(service); ok {
		sets = append(sets, c.migrations())
	}
	return sets
}

// checkFlagsOf refuses a flag given to `serve service` on the command line
// that belongs to other services only, naming who takes it.
func checkFlagsOf(service string, given map[string]bool) error {
	for _, c := range components {
		for _, f := range c.flags {
			if !given[f] {
				continue
			}
			var owners []string
			for _, o := range components {
				if slices.Contains(o.flags, f) {
					owners = append(owners, o.name)
				}
			}
			if !slices.Contains(owners, service) {
				return usagef("--%s is for serve %s, not serve %s", f, strings.Join(owners, " and serve "), service)
			}
		}
	}
	return nil
}
