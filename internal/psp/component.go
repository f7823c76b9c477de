package psp

import (
	"errors"
	"flag"
	"fmt"

	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/pspapi"
)

// Component is the payment-provider simulator: an outside system's API
// (served apart from ordermesh's) and its admin ledger. cfg's faults,
// async mode and credentials are its flags.
func Component(cfg *Config) component.Component {
	return component.Component{Name: "psp", Migrations: Migrations, API: (*Server)(nil).API, Settings: cfg, Outside: true,
		ServeNeeds: cfg.serveNeeds, Start: func(env *component.Env) error { return start(env, *cfg) }}
}

// Flags declares the simulator's flags.
func (cfg *Config) Flags(fs *flag.FlagSet) {
	fs.Float64Var(&cfg.ErrorRate, "psp-error-rate", 0, "payment-provider simulator: share of requests answered 503 (0-1)")
	fs.Float64Var(&cfg.TimeoutRate, "psp-timeout-rate", 0, "payment-provider simulator: share of requests that hang past the client's timeout (0-1)")
	fs.DurationVar(&cfg.Latency, "psp-latency", 0, "payment-provider simulator: latency added to every request")
	fs.BoolVar(&cfg.Async, "psp-async", false, "payment-provider simulator: answer authorizations pending and send the outcome by signed webhook")
	fs.StringVar(&cfg.NotifyURL, "psp-notify-url", "", "psp: base URL of payments, for async outcomes (e.g. http://127.0.0.1:9103)")
	component.StringVar(fs, &cfg.APIKey, "psp-api-key",
		"the payment provider's API key: serve psp requires it from callers, serve payments sends it (run makes one)")
	component.StringVar(fs, &cfg.Secret, "psp-webhook-secret",
		"whsec_ secret signing the provider's webhooks (serve psp and serve payments must share it; run makes one)")
}

// Check says what is wrong with the flags.
func (cfg *Config) Check() error {
	switch {
	case cfg.ErrorRate < 0 || cfg.ErrorRate > 1:
		return fmt.Errorf("--psp-error-rate must be between 0 and 1, got %g", cfg.ErrorRate)
	case cfg.TimeoutRate < 0 || cfg.TimeoutRate > 1:
		return fmt.Errorf("--psp-timeout-rate must be between 0 and 1, got %g", cfg.TimeoutRate)
	case cfg.Latency < 0:
		return errors.New("--psp-latency must not be negative")
	}
	return nil
}

func (cfg *Config) serveNeeds() error {
	switch {
	case cfg.APIKey == "":
		return errors.New("serve psp needs --psp-api-key, the payment provider's API key (the same for serve psp and serve payments)")
	case cfg.Async && (cfg.NotifyURL == "" || cfg.Secret == ""):
		return errors.New("serve psp --psp-async needs --psp-notify-url (the payments service's base URL) and --psp-webhook-secret (shared with payments)")
	}
	return nil
}

func start(env *component.Env, cfg Config) error {
	if cfg.APIKey == "" {
		return errors.New("serve psp needs --psp-api-key (the provider's API key, shared with serve payments)")
	}
	if cfg.NotifyURL == "" {
		cfg.NotifyURL = env.URL
	}
	if cfg.Latency >= pspapi.ClientTimeout {
		env.Log.Warn("--psp-latency is at least the payments client's timeout: every call to the provider will time out, and orders wait for their deadline",
			"latency", cfg.Latency, "client_timeout", pspapi.ClientTimeout)
	}
	sim := New(env.DB, cfg, env.Log)
	sim.Routes(env.Mux)
	env.ServeOutside(sim.ProviderAPI())
	env.Go(sim.RunNotifier)
	return nil
}
