package app

import (
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/inventory"
	"github.com/ordermesh/ordermesh/internal/notification"
	"github.com/ordermesh/ordermesh/internal/order"
	"github.com/ordermesh/ordermesh/internal/payment"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
	"github.com/ordermesh/ordermesh/internal/psp"
	"github.com/ordermesh/ordermesh/internal/shipping"
)

// component is one service ordermesh can run: `run` starts them all, in
// this order, and `serve NAME` one. Adding a service is one entry here
// (and its routes in the gateway's table, gateway.Classify).
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
}

var components = []component{
	{name: "orders", migrations: order.Migrations, start: (*Node).startOrders},
	{name: "inventory", migrations: inventory.Migrations, start: (*Node).startInventory},
	{name: "payments", migrations: payment.Migrations, start: (*Node).startPayments},
	{name: "shipping", migrations: shipping.Migrations, start: (*Node).startShipping},
	{name: "notifications", migrations: notification.Migrations, start: (*Node).startNotifications},
	{name: "psp", migrations: psp.Migrations, start: (*Node).startPSP},
	{name: "gateway", migrations: gateway.Migrations, optionalDB: true, start: (*Node).startGateway},
}

// Services lists what `ordermesh serve` can run, in start order.
var Services = func() []string {
	names := make([]string, len(components))
	for i, c := range components {
		names[i] = c.name
	}
	return names
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
