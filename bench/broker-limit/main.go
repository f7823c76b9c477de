// Command broker-limit measures the raw limit of this machine's embedded
// NATS JetStream, as ordermesh runs it (file store, in-process
// connection): the asynchronous publish rate and the consume+ack rate of
// 256-byte messages. It prints one JSON object.
//
//	go run ./bench/broker-limit -n 200000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

func main() {
	n := flag.Int("n", 200000, "messages per measurement")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "broker-limit:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	dir, err := os.MkdirTemp("", "broker-limit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: dir})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("broker-limit")
	if err != nil {
		return err
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := b.EnsureStreams(ctx); err != nil {
		return err
	}
	js := b.JetStream()
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}

	start := time.Now()
	for range n {
		if _, err := js.PublishAsync("events.bench.raw", payload); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publish acks did not arrive")
	}
	publish := float64(n) / time.Since(start).Seconds()

	cons, err := js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "broker-limit", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096,
	})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	got := 0
	start = time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		m.Ack()
		if got++; got == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(512))
	if err != nil {
		return err
	}
	<-done
	consume := float64(n) / time.Since(start).Seconds()
	cc.Stop()

	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"messages": n, "message_bytes": len(payload),
		"publish_async_per_s": int(publish), "consume_ack_per_s": int(consume),
	})
}
