package inventory

import "github.com/ordermesh/ordermesh/internal/platform/component"

// Component is the inventory service: it serves the catalog and stock,
// and reserves, releases and commits stock on the saga's events.
var Component = component.Component{Name: "inventory", Migrations: Migrations, API: (*Service)(nil).API,
	Start: func(env *component.Env) error {
		svc := New(env.DB, env.Outbox, env.Log)
		svc.Routes(env.Mux)
		_, err := env.Consume(svc.Consumer())
		return err
	}}
