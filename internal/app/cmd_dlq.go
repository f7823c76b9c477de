package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/rabbitmq"
)

const dlqSynopsis = `Usage: ordermesh dlq COMMAND [flags]

Commands:
  list                 every dead letter: id, consumer, type, event id, error
  show ID              one dead letter with its headers and data
  replay ID...         send dead letters back to the consumer named in each
  replay --all         replay every dead letter
  purge --yes          delete every dead letter

By default dlq works through the admin API of a running system (--url,
default http://127.0.0.1:8080) with the admin token of its data directory
(--data, default ./data) or --token. With --nats URL it works on the broker
itself: ordermesh run --nats-listen 127.0.0.1:4222 exposes the embedded
broker to user ordermesh, whose password is in DATA/nats-password. With
--broker amqp://USER:PASS@HOST:5672/VHOST it works on that RabbitMQ's
ordermesh.dlq queue.`

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dlq", dlqSynopsis, stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "base URL of a running ordermesh (its gateway), whose admin API dlq uses")
	token := fs.String("token", "", "admin bearer token (default: the dev admin token in --data)")
	data := fs.String("data", "./data", "data directory of `ordermesh run`, to read its dev-admin.jwt from")
	natsURL := fs.String("nats", "", "work on the broker at this NATS URL instead of through --url")
	brokerURL := fs.String("broker", "", "work on the RabbitMQ broker at this amqp:// URL instead of through --url")
	var nf natsFlags
	nf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "replay: every dead letter")
	yes := fs.Bool("yes", false, "purge: really delete every dead letter")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return usagef("dlq needs a command: list, show, replay or purge")
	}
	sub := pos[0]
	ids, err := dlqIDs(sub, pos[1:], *all, *yes)
	if err != nil {
		return err
	}
	var dl deadLetters
	switch {
	case *natsURL != "" && *brokerURL != "":
		return usagef("dlq takes --nats or --broker, not both")
	case *brokerURL != "":
		rb, err := rabbitmq.Dial(ctx, *brokerURL, "ordermesh-dlq", bus.Config{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return err
		}
		defer rb.Close()
		dl = rb
	case *natsURL == "":
		tok, err := adminToken(*token, *data)
		if err != nil {
			return err
		}
		dl = newAdminDLQ(*base, tok)
	default:
		natsOpts, err := nf.options()
		if err != nil {
			return err
		}
		nc, err := bus.Dial(ctx, *natsURL, "ordermesh-dlq", natsOpts...)
		if err != nil {
			return err
		}
		defer nc.Close()
		if dl, err = bus.New(nc, bus.Config{}); err != nil {
			return err
		}
	}
	switch sub {
	case "list":
		return dlqList(ctx, dl, stdout, *asJSON)
	case "show":
		return dlqShow(ctx, dl, stdout, ids[0], *asJSON)
	case "replay":
		return dlqReplay(ctx, dl, stdout, ids, *all)
	}
	n, err := dl.PurgeDeadLetters(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "purged %d dead letter(s)\n", n)
	return nil
}

// dlqIDs checks a dlq command's arguments and returns its ids.
func dlqIDs(sub string, args []string, all, yes bool) ([]uint64, error) {
	ids := make([]uint64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return nil, usagef("dead-letter id %q: want a positive number as shown by 'ordermesh dlq list'", a)
		}
		ids = append(ids, id)
	}
	switch {
	case sub == "list" && len(ids) > 0, sub == "purge" && len(ids) > 0:
		return nil, usagef("dlq %s takes no ids", sub)
	case sub == "show" && len(ids) != 1:
		return nil, usagef("dlq show needs exactly one ID")
	case sub == "replay" && (len(ids) == 0) == !all:
		return nil, usagef("dlq replay needs dead-letter IDs or --all (not both)")
	case sub == "purge" && !yes:
		return nil, usagef("dlq purge deletes every dead letter; add --yes to confirm")
	case !slices.Contains([]string{"list", "show", "replay", "purge"}, sub):
		return nil, usagef("unknown dlq command %q (list, show, replay, purge)", sub)
	}
	return ids, nil
}

// dlqList prints every dead letter, a line each, or as JSON.
func dlqList(ctx context.Context, b deadLetters, stdout io.Writer, asJSON bool) error {
	dls, err := b.DeadLetters(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if dls == nil {
			dls = []bus.DeadLetter{} // [], not null: a list, empty
		}
		return json.NewEncoder(stdout).Encode(dls)
	}
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONSUMER\tTYPE\tEVENT\tDELIVERIES\tAT\tERROR")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Consumer, d.Type, d.EventID, d.Deliveries,
			d.At.Format(time.RFC3339), truncate(d.Error, 80))
	}
	return tw.Flush()
}

// dlqShow prints one dead letter with its headers and data.
func dlqShow(ctx context.Context, b deadLetters, stdout io.Writer, id uint64, asJSON bool) error {
	d, err := b.DeadLetter(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			bus.DeadLetter
			Data json.RawMessage `json:"data"`
		}{d, validJSONOrString(d.Data)})
	}
	fmt.Fprintf(stdout, "id:          %d\nconsumer:    %s\ntype:        %s\nevent:       %s\nfrom:        %s seq %d (%s)\ndeliveries:  %d\nat:          %s\nerror:       %s\nheaders:\n",
		d.ID, d.Consumer, d.Type, d.EventID, d.Stream, d.StreamSeq, d.Subject, d.Deliveries, d.At.Format(time.RFC3339Nano), d.Error)
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "  %s: %s\n", k, d.Headers[k])
	}
	fmt.Fprintf(stdout, "data:\n%s\n", d.Data)
	return nil
}

// dlqReplay sends dead letters (ids, or every one with all) back to their
// consumers.
func dlqReplay(ctx context.Context, b deadLetters, stdout io.Writer, ids []uint64, all bool) error {
	if all {
		dls, err := b.DeadLetters(ctx)
		if err != nil {
			return err
		}
		for _, d := range dls {
			ids = append(ids, d.ID)
		}
	}
	for _, id := range ids {
		if err := b.Replay(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %d\n", id)
	}
	if len(ids) != 1 {
		fmt.Fprintf(stdout, "%d dead letter(s) replayed\n", len(ids)) // one says so once
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func validJSONOrString(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
