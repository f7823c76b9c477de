package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("setup", "Usage: ordermesh setup --nats URL [--replicas 3] [flags]\n\nCreates or updates the broker's streams (EVENTS, DLQ, REPLAY) and exits: the\nexplicit first step of a deployment. While the cluster cannot place them yet\n(still forming, too few servers) it retries, until --timeout. Replicas are\nnever lowered. Every service also does this at start.", stderr)
	natsURL := fs.String("nats", "", "NATS server URLs, comma-separated (required)")
	var nf natsFlags
	nf.register(fs)
	var sf streamFlags
	sf.register(fs)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the cluster to place the streams")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *natsURL == "" {
		return usagef("setup needs --nats URL (or $ORDERMESH_NATS)")
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
