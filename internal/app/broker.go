package app

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ordermesh/ordermesh/internal/event"
	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
)

// connect connects the node to its broker: the embedded one of a data
// directory (run), or the servers of --nats (serve), or none for a gateway
// of static upstreams; then it makes sure the streams exist.
func (n *Node) connect(ctx context.Context) error {
	var err error
	if n.cfg.BrokerURL != "" {
		return n.connectRabbit(ctx)
	}
	if n.brokerless() {
		n.log.Info("no --nats: a gateway of static upstreams only; the console's broker views (dead letters, an order's events, the live stream) answer 503, and the catalog cache lives out its TTL")
		return nil
	}
	if n.cfg.DataDir != "" {
		if err := n.lockData(); err != nil {
			return err
		}
		password, err := embeddedPassword(n.cfg.DataDir)
		if err != nil {
			return err
		}
		identities, err := brokerIdentities(n.cfg.DataDir)
		if err != nil {
			return err
		}
		n.embedded, err = bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(n.cfg.DataDir, "nats"), Listen: n.cfg.NATSListen,
			User: NATSUser, Password: password, Identities: identities})
		if err != nil {
			return err
		}
		// err is this block's own (declared with the password): check it here.
		if n.nc, err = n.embedded.Connect("ordermesh"); err != nil {
			return err
		}
	} else {
		n.nc, err = bus.Dial(ctx, n.cfg.NATSURL, "ordermesh-"+fmt.Sprint(n.cfg.Services), n.cfg.NATSOptions...)
	}
	if err != nil {
		return err
	}
	schemas, err := event.LoadSchemas()
	if err != nil {
		return fmt.Errorf("event schemas: %w", err)
	}
	if n.Bus, err = bus.New(n.nc, bus.Config{Replicas: n.cfg.Replicas, Placement: n.cfg.Placement, MaxBytes: n.cfg.StreamMaxBytes,
		Partitioned: n.cfg.Partitioned, ConsumerMemory: n.cfg.ConsumerMemory, ConsumerReplicas: n.cfg.ConsumerReplicas, Metrics: n.reg, Logger: n.log, Validate: schemas.Validate,
		Sources: eventSources()}); err != nil {
		return err
	}
	n.broker = n.Bus
	if err := n.connectServices(); err != nil {
		return err
	}
	timeout := n.cfg.StreamsTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.Bus.EnsureStreams(sctx)
}

// brokerless reports whether this node runs without a broker: a gateway
// served alone with no --nats (its upstreams are static).
func (n *Node) brokerless() bool {
	return n.cfg.DataDir == "" && n.cfg.NATSURL == "" && n.cfg.BrokerURL == "" && len(n.cfg.Services) == 1 && isEdge(n.cfg.Services[0])
}

// connectRabbit connects the node to the RabbitMQ broker of --broker and
// declares the topology; run's data directory is still locked (its
// databases are there), but no NATS server is embedded.
func (n *Node) connectRabbit(ctx context.Context) error {
	if n.cfg.DataDir != "" {
		if err := n.lockData(); err != nil {
			return err
		}
	}
	schemas, err := event.LoadSchemas()
	if err != nil {
		return fmt.Errorf("event schemas: %w", err)
	}
	timeout := cmp.Or(n.cfg.StreamsTimeout, 2*time.Minute)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n.rabbit, err = rabbitmq.Dial(ctx, n.cfg.BrokerURL, "ordermesh-"+fmt.Sprint(n.cfg.Services),
		bus.Config{Logger: n.log, Validate: schemas.Validate, Sources: eventSources(), Metrics: n.reg})
	if err != nil {
		return err
	}
	n.broker = n.rabbit
	return nil
}

// lockData makes sure run's data directory exists and holds its lock
// until Close: one run per directory.
func (n *Node) lockData() error {
	if err := existingDir(n.cfg.DataDir, true); err != nil {
		return err
	}
	release, err := lockDataDir(n.cfg.DataDir, "run")
	if err != nil {
		return err
	}
	n.unlock = release
	return nil
}
