package notification

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/notification/webhook"
	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
)

// Component is the notifications service: it writes customers' messages
// and delivers merchants' webhooks. hooks' delivery settings are its
// flags.
func Component(hooks *webhook.Config) component.Component {
	return component.Component{Name: "notifications", Migrations: Migrations, Settings: hooks,
		API:   func() []httpx.Route { return append((*Service)(nil).API(), (*webhook.Service)(nil).API()...) },
		Start: func(env *component.Env) error { return start(env, *hooks) }}
}

func start(env *component.Env, whCfg webhook.Config) error {
	svc := New(env.DB, env.Log)
	svc.Routes(env.Mux)
	if _, err := env.Consume(svc.Consumer()); err != nil {
		return err
	}
	whCfg.DB, whCfg.Outbox, whCfg.Logger = env.DB, env.Outbox, env.Log
	hooks := webhook.New(whCfg)
	hooks.Routes(env.Mux)
	env.Metrics.MustRegister(webhook.Attempts, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ordermesh_webhook_breakers_open",
		Help: "Webhook endpoints this process is not attempting now because their circuit breaker is open or half-open.",
	}, func() float64 { return float64(hooks.OpenBreakers()) }))
	env.Go(hooks.Run)
	// The webhooks consumer receives only the types some enabled
	// endpoint subscribes to (none: no delivery at all), and follows the
	// endpoints from then on.
	cfg, h := hooks.Consumer()
	var err error
	if cfg.Types, err = hooks.ConsumerTypes(env.Ctx); err != nil {
		return fmt.Errorf("webhook subscriptions: %w", err)
	}
	c, err := env.Consume(cfg, h)
	if err != nil {
		return err
	}
	hooks.Follow(c)
	return nil
}
