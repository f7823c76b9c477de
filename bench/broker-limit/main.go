// Command broker-limit measures the raw limit of this machine's embedded
// NATS JetStream, as ordermesh runs it (file store, in-process
// connection): the asynchronous publish rate and the consume+ack rate of
// 256-byte messages. It prints one JSON object. With -url it measures a
// running cluster instead, over TCP, on a stream of its own (BENCHRAW,
// -replicas copies) that it deletes afterwards: the scale-out benchmark's
// raw figure beside its orders.
//
//	go run ./bench/broker-limit -n 200000
//	go run ./bench/broker-limit -url nats://… -user ordermesh -password-file F -replicas 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
)

func main() {
	n := flag.Int("n", 200000, "messages per measurement")
	url := flag.String("url", "", "a running broker's URLs, comma-separated (default: an embedded one)")
	user := flag.String("user", "", "the user on -url (one allowed to create streams)")
	passFile := flag.String("password-file", "", "a file holding -user's password")
	replicas := flag.Int("replicas", 1, "the replicas of the stream measured on -url")
	flag.Parse()
	var err error
	if *url != "" {
		err = remote(*n, *url, *user, *passFile, *replicas)
	} else {
		err = run(*n)
	}
	if err != nil {
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
	return measure(ctx, b.JetStream(), n, bus.StreamEvents, "events.bench.raw")
}

// remote measures a running broker on a stream of its own.
func remote(n int, url, user, passFile string, replicas int) error {
	var opts []nats.Option
	if passFile != "" {
		pass, err := os.ReadFile(passFile)
		if err != nil {
			return err
		}
		opts = append(opts, nats.UserInfo(user, strings.TrimSpace(string(pass))))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCHRAW", Subjects: []string{"benchraw.>"}, Replicas: replicas}); err != nil {
		return err
	}
	defer js.DeleteStream(ctx, "BENCHRAW")
	return measure(ctx, js, n, "BENCHRAW", "benchraw.msg")
}

// measure publishes n messages to subject asynchronously, then consumes
// and acknowledges them from stream, and prints both rates.
func measure(ctx context.Context, js jetstream.JetStream, n int, stream, subject string) error {
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}

	start := time.Now()
	for range n {
		if _, err := js.PublishAsync(subject, payload); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publish acks did not arrive")
	}
	publish := float64(n) / time.Since(start).Seconds()

	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
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
