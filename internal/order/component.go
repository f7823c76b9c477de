package order

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/component"
	"github.com/ordermesh/ordermesh/internal/platform/sealed"
)

// Component is the orders service: it serves orders, drives their state
// machine and cancels those past their deadline. cfg's Deadline is its
// flag; the node fills in the rest.
func Component(cfg *Config) component.Component {
	return component.Component{Name: "orders", Migrations: Migrations, API: (*Service)(nil).API, Settings: cfg,
		ServeNeeds: cfg.serveNeeds, Start: func(env *component.Env) error { return start(env, *cfg) }}
}

// Flags declares the orders service's flags.
func (cfg *Config) Flags(fs *flag.FlagSet) {
	fs.DurationVar(&cfg.Deadline, "order-deadline", 30*time.Second, "orders not confirmed by then are cancelled with reason timeout")
	fs.DurationVar(&cfg.MaxWait, "order-max-wait", 0,
		"refuse new orders (503, Retry-After) while more than 100 accepted orders have waited this long, so that past its capacity the pipeline sheds load instead of letting orders time out (0: a sixth of --order-deadline, 5s of 30s)")
	fs.StringVar(&cfg.TokenPublicKeyText, "payment-token-public-key", "",
		"orders: the payments service's public key, which each order's payment token is sealed to before it leaves orders (ordermesh setup --identities makes it; run makes its own)")
	fs.StringVar(&cfg.TokenPublicKeyFile, "payment-token-public-key-file", "", "orders: a file holding --payment-token-public-key (setup --identities writes DIR/payment-token.pub)")
}

func (cfg *Config) serveNeeds() error {
	if cfg.TokenPublicKeyText == "" && cfg.TokenPublicKeyFile == "" && cfg.TokenPublicKey.IsZero() {
		return errors.New("orders needs --payment-token-public-key (or $ORDERMESH_PAYMENT_TOKEN_PUBLIC_KEY): payment tokens leave orders only sealed to payments; `ordermesh setup --identities DIR` writes it to DIR/payment-token.pub")
	}
	return nil
}

// Check says what is wrong with the flags (as parsed: zero is not
// their default there).
func (cfg *Config) Check() error {
	if cfg.Deadline < time.Second {
		return fmt.Errorf("--order-deadline must be at least 1s, got %s", cfg.Deadline)
	}
	if cfg.MaxWait < 0 || cfg.MaxWait >= cfg.Deadline {
		return fmt.Errorf("--order-max-wait must be shorter than --order-deadline (%s), got %s", cfg.Deadline, cfg.MaxWait)
	}
	return nil
}

func start(env *component.Env, cfg Config) error {
	if err := cfg.serveNeeds(); err != nil {
		return err
	}
	if cfg.TokenPublicKey.IsZero() {
		pub, err := sealed.Load(cfg.TokenPublicKeyText, cfg.TokenPublicKeyFile, "payment-token-public-key", sealed.ParsePublicKey)
		if err != nil {
			return err
		}
		cfg.TokenPublicKey = pub
	}
	cfg.DB, cfg.Outbox, cfg.Logger = env.DB, env.Outbox, env.Log
	cfg.Changed = func(id string) { env.Bus.Changed("order", id) }
	cfg.CatalogCaughtUp = func(ctx context.Context, sku string) (bool, error) {
		return env.Bus.CaughtUp(ctx, ConsumerName, event.ProductUpdated, sku)
	}
	svc := New(cfg)
	svc.Routes(env.Mux)
	env.Metrics.MustRegister(Finished, Lifetime, Shed)
	// Long polls and event streams on any instance are woken by the
	// broker, whichever instance changed the order.
	stopWatch, err := env.Bus.OnChanged("order", svc.Notify)
	if err != nil {
		return err
	}
	env.OnClose(stopWatch)
	env.Go(func(ctx context.Context) { svc.RunDeadlines(ctx, 250*time.Millisecond) })
	_, err = env.Consume(svc.Consumer())
	return err
}
