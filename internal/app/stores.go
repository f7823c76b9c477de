package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/every"
	"github.com/ordermesh/ordermesh/internal/platform/inbox"
	"github.com/ordermesh/ordermesh/internal/platform/outbox"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// store is one service's database, its outbox and the relay publishing it.
type store struct {
	db     *sqldb.DB
	outbox *outbox.Outbox
}

// platformMigrations are the tables every service database has.
func platformMigrations() []sqldb.Migrations {
	return []sqldb.Migrations{outbox.Migrations(), inbox.Migrations()}
}

// InboxRetention is how long inbox records are kept: longer than the EVENTS
// stream's history, so any event the broker can still redeliver or replay
// is recognised as a duplicate.
const InboxRetention = bus.EventsMaxAge + 24*time.Hour

// pruneInboxes deletes expired inbox records of every store once an hour.
func (n *Node) pruneInboxes(ctx context.Context) {
	every.Run(ctx, time.Hour, func(ctx context.Context) {
		for name, st := range n.stores {
			if _, err := inbox.Prune(ctx, st.db, InboxRetention); err != nil && ctx.Err() == nil {
				n.log.Warn("prune inbox", "service", name, "err", err)
			}
		}
	})
}

// DSN is the database a service uses under cfg.
func (cfg Config) DSN(service string) (string, error) {
	if dsn, ok := cfg.DSNs[service]; ok {
		return dsn, nil
	}
	if cfg.DataDir != "" {
		return "sqlite:" + filepath.Join(cfg.DataDir, service+".db"), nil
	}
	if cfg.DB == "" {
		return "", fmt.Errorf("service %s needs a database: pass --db sqlite:PATH or --db postgres://USER:PASS@HOST/DB", service)
	}
	return cfg.DB, nil
}

func (n *Node) openStore(ctx context.Context, service string) error {
	dsn, err := n.cfg.DSN(service)
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("%s database: %w", service, err)
	}
	if err := db.Migrate(ctx, migrationsOf(service)...); err != nil {
		db.Close()
		return fmt.Errorf("%s database: %w", service, err)
	}
	n.stores[service] = &store{db: db, outbox: outbox.New(db)}
	return nil
}

// ConsumeBatch starts a durable consumer whose events are handled in
// batches, with the node's --max-deliver; Close drains it before the
// outbox relays flush, so events its handlers commit are still published.
func (n *Node) ConsumeBatch(ctx context.Context, cfg bus.ConsumerConfig, h bus.BatchHandler) error {
	_, err := n.consumeBatch(ctx, n.broker, cfg, h)
	return err
}

func (n *Node) consumeBatch(ctx context.Context, b bus.Broker, cfg bus.ConsumerConfig, h bus.BatchHandler) (bus.Subscription, error) {
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = n.cfg.MaxDeliver
	}
	c, err := b.Subscribe(ctx, cfg, h)
	if err != nil {
		return nil, err
	}
	n.consMu.Lock()
	n.cons = append(n.cons, c)
	n.consMu.Unlock()
	return c, nil
}

// answers reports whether the store's database answers a query.
func (st *store) answers(ctx context.Context) error {
	var one int
	return st.db.QueryRow(ctx, "SELECT 1").Scan(&one)
}
