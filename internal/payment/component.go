package payment

import (
	"errors"
	"flag"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// Component is the payments service: it moves money through the payment
// provider on the saga's events. The provider's URL and credentials in
// cfg are its flags (`run` fills them in for its own simulator).
func Component(cfg *Config) component.Component {
	return component.Component{Name: "payments", Migrations: Migrations, API: (*Service)(nil).API, Settings: cfg,
		ServeNeeds: cfg.serveNeeds, Start: func(env *component.Env) error { return start(env, *cfg) }}
}

// Flags declares the payments service's flags.
func (cfg *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cfg.Client.BaseURL, "psp-url", "", "payments: base URL of the payment provider (e.g. http://127.0.0.1:9106)")
	component.StringVar(fs, &cfg.Client.APIKey, "psp-api-key",
		"the payment provider's API key: serve psp requires it from callers, serve payments sends it (run makes one)")
	fs.StringVar(&cfg.TokenKeyText, "payment-token-key", "",
		"payments: the private key that opens the payment tokens orders seals into order.placed (ordermesh setup --identities makes one; run makes its own)")
	fs.StringVar(&cfg.TokenKeyFile, "payment-token-key-file", "", "payments: a file holding --payment-token-key (setup --identities writes DIR/payment-token.key)")
	component.StringVar(fs, &cfg.WebhookSecret, "psp-webhook-secret",
		"whsec_ secret signing the provider's webhooks (serve psp and serve payments must share it; run makes one)")
}

// Check says what is wrong with the flags: nothing the types allow.
func (cfg *Config) Check() error { return nil }

func (cfg *Config) serveNeeds() error {
	switch {
	case cfg.Client.BaseURL == "":
		return errors.New("serve payments needs --psp-url, the payment provider's base URL")
	case cfg.Client.APIKey == "":
		return errors.New("serve payments needs --psp-api-key, the payment provider's API key (the same for serve psp and serve payments)")
	case cfg.TokenKeyText == "" && cfg.TokenKeyFile == "" && cfg.TokenKey.IsZero():
		return errors.New("payments needs --payment-token-key (or $ORDERMESH_PAYMENT_TOKEN_KEY), the key that opens sealed payment tokens; `ordermesh setup --identities DIR` writes one to DIR/payment-token.key, and serve orders takes its public half")
	}
	return nil
}

func start(env *component.Env, cfg Config) error {
	if cfg.Provider == nil {
		if cfg.Client.BaseURL == "" {
			return errors.New("payments needs the provider's URL: pass --psp-url")
		}
		client := NewProviderClient(cfg.Client)
		env.Metrics.MustRegister(ProviderCalls, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ordermesh_breaker_state",
			Help:        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
			ConstLabels: prometheus.Labels{"breaker": "psp"},
		}, client.BreakerState))
		cfg.Provider = client
	}
	if err := cfg.serveNeeds(); err != nil && cfg.TokenKey.IsZero() && cfg.TokenKeyText == "" && cfg.TokenKeyFile == "" {
		return err
	}
	if cfg.TokenKey.IsZero() {
		key, err := sealed.Load(cfg.TokenKeyText, cfg.TokenKeyFile, "payment-token-key", sealed.ParseKey)
		if err != nil {
			return err
		}
		cfg.TokenKey = key
	}
	cfg.DB, cfg.Outbox, cfg.Logger = env.DB, env.Outbox, env.Log
	svc := New(cfg)
	svc.Routes(env.Mux)
	_, err := env.Consume(svc.Consumer())
	return err
}
