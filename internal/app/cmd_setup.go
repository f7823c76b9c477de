package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
)

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("setup", "Usage: ordermesh setup --nats URL [--replicas 3] [flags]\n       ordermesh setup --broker amqp://USER:PASS@HOST:5672/VHOST\n       ordermesh setup --identities DIR [--nats URL …]\n\nCreates or updates the broker's streams (EVENTS, DLQ, REPLAY) and exits: the\nexplicit first step of a deployment. While the cluster cannot place them yet\n(still forming, too few servers) it retries, until --timeout. Replicas are\nnever lowered. A service whose broker identity may not change the streams\nstarts only on streams setup made (as the administrative user).\n\nWith --identities DIR it first writes the deployment's secrets to DIR (kept\nif there): a broker password per service (nats-SERVICE.password, for serve's\n--nats-user SERVICE --nats-password-file), nats-auth.conf (the users and\ntheir permissions, for nats-server.conf to include), and the payment-token\nkey pair (payment-token.key for serve payments, payment-token.pub for serve\norders). Without --nats it stops there.", stderr)
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated (required, or --broker)")
	brokerURL := fs.String("broker", "", "declare the topology on this RabbitMQ broker instead, amqp://USER:PASS@HOST:5672/VHOST: the exchanges, the DLQ and the unrouted queue")
	var nf natsFlags
	nf.register(fs)
	var sf streamFlags
	sf.register(fs)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the cluster to place the streams")
	identities := fs.String("identities", "", "write the services' broker identities and the payment-token keys to this directory (made 0700)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *identities != "" {
		paths, err := writeIdentities(*identities)
		if err != nil {
			return err
		}
		for _, p := range paths {
			fmt.Fprintln(stdout, p)
		}
		if *natsURL == "" && *brokerURL == "" {
			return nil
		}
	}
	if *brokerURL != "" {
		return setupRabbitMQ(ctx, *brokerURL, *timeout, stdout, stderr)
	}
	if *natsURL == "" {
		return usagef("setup needs --nats URL (or $ORDERMESH_NATS), or --identities DIR")
	}
	if err := sf.validate(); err != nil {
		return err
	}
	opts, err := nf.options()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := bus.Dial(ctx, *natsURL, "ordermesh-setup", opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	var cfg Config
	sf.config(&cfg)
	b, err := bus.New(nc, bus.Config{Replicas: cfg.Replicas, Placement: cfg.Placement, MaxBytes: cfg.StreamMaxBytes, Logger: log})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := b.EnsureStreams(sctx); err != nil {
		return err
	}
	return printStreams(ctx, b, stdout)
}

// printStreams says what the pipeline's streams hold.
func printStreams(ctx context.Context, b *bus.Bus, stdout io.Writer) error {
	for _, name := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamReplay} {
		st, err := b.JetStream().Stream(ctx, name)
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		fmt.Fprintf(stdout, "%s: %d replica(s), %d messages\n", name, info.Config.Replicas, info.State.Msgs)
	}
	return nil
}

// setupRabbitMQ declares the topology on the RabbitMQ at url (each
// service declares its own queue when it starts) and says what is there.
func setupRabbitMQ(ctx context.Context, url string, timeout time.Duration, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := rabbitmq.Dial(ctx, url, "ordermesh-setup", bus.Config{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	dls, err := b.DeadLetters(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (topic), %s, %s: declared on %s\n%s: %d dead letter(s)\n",
		rabbitmq.ExchangeEvents, rabbitmq.QueueUnrouted, rabbitmq.QueueDLQ, rabbitmq.Redact(url), rabbitmq.QueueDLQ, len(dls))
	return nil
}
