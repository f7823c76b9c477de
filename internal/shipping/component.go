package shipping

import "github.com/ordermesh/ordermesh/internal/platform/component"

// Component is the shipping service: it creates shipments for confirmed
// orders.
var Component = component.Component{Name: "shipping", Migrations: Migrations,
	Start: func(env *component.Env) error {
		_, err := env.Consume(New(env.DB, env.Outbox).Consumer())
		return err
	}}
