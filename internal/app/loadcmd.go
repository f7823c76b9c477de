package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ordermesh/ordermesh/internal/load"
)

const loadSynopsis = `Usage: ordermesh load [flags]

Sends orders at a fixed arrival rate (open loop), follows each to completed
or cancelled through Server-Sent Events, and prints accept and completion
latencies, throughput and errors. It creates its own products on first use,
and checks the system's invariants afterwards (exit 1 on a violation).

--follow stream (the default) watches every order's end on one connection,
the admin event stream (needs an admin token, such as DATA/dev-admin.jwt).
--follow order opens each order's own stream, as a shop's order page would:
one more connection and request per order, on both sides.

It runs on one CPU (GOMAXPROCS=1; set GOMAXPROCS to change that), so that
on a shared machine it leaves the rest to the system it measures.

  ordermesh load --rate 500 --duration 60s
  ordermesh load --max --slo 500ms          find the highest sustainable rate`

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load", loadSynopsis, stderr)
	target := fs.String("target", "http://localhost:8080", "ordermesh base URL")
	token := fs.String("token", "", "bearer token (default: the dev admin token in --data)")
	data := fs.String("data", "./data", "data directory of `ordermesh run`, to read its dev-admin.jwt from")
	rateFlag := rateValue(200)
	fs.Var(&rateFlag, "rate", "orders per second: 300 or 300/s (also 18000/m)")
	rate := (*float64)(&rateFlag)
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	findMax := fs.Bool("max", false, "search for the highest rate with p99 completion under --slo and no errors")
	slo := fs.Duration("slo", 500*time.Millisecond, "completion p99 objective for --max")
	step := fs.Duration("step", 15*time.Second, "length of each --max trial")
	mix := fs.Float64("mix", 0, "share of orders meant to fail (declined, out of stock, customer cancel), 0-1")
	maxInFlight := fs.Int("max-in-flight", 20000, "orders in flight before new ones count as client_saturated errors")
	drain := fs.Duration("drain", 60*time.Second, "how long to wait for orders to settle after sending stops")
	follow := fs.String("follow", load.FollowStream, "how to see orders settle: stream (one admin event stream) or order (each order's own stream)")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file (- for stdout)")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file (go tool pprof)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if err := checkLoadFlags(*target, *rate, *mix, *follow, map[string]time.Duration{"duration": *duration, "slo": *slo, "step": *step, "drain": *drain}); err != nil {
		return err
	}
	stop, err := loadProcess(*cpuProfile)
	if err != nil {
		return err
	}
	defer stop()
	human := stdout
	if *jsonOut == "-" {
		human = stderr // stdout carries only the JSON; people read stderr
	}
	if *token, err = adminToken(*token, *data); err != nil {
		return err
	}
	r := load.New(load.Config{Target: strings.TrimRight(*target, "/"), Token: *token, Rate: *rate, Duration: *duration,
		MaxInFlight: *maxInFlight, Mix: *mix, Drain: *drain, Follow: *follow, Progress: progressPrinter(stderr)})
	defer r.Close()
	fmt.Fprintf(stderr, "preparing %s (products, catalog)…\n", *target)
	if err := r.Setup(ctx); err != nil {
		return err
	}

	var res load.Result
	report := map[string]any{}
	if *findMax {
		if res, err = searchMax(ctx, r, *rate, *step, *slo, human, stderr, report); err != nil {
			return err
		}
	} else {
		res = r.Run(ctx)
		fmt.Fprintln(stderr)
	}
	printResult(human, res)
	report["result"] = res
	return checkLoad(ctx, r, res, report, *jsonOut, *drain, human, stdout)
}

// checkLoad checks the invariants after a load run, writes the JSON
// report if asked, and fails the run on a violation or an order left
// unsettled.
func checkLoad(ctx context.Context, r *load.Runner, res load.Result, report map[string]any, jsonOut string, drain time.Duration, human, stdout io.Writer) error {

	violations, err := r.Check(context.WithoutCancel(ctx), res)
	if err != nil {
		return fmt.Errorf("check invariants: %w", err)
	}
	report["invariant_violations"] = violations
	if jsonOut != "" {
		if err := writeJSONFile(jsonOut, stdout, report); err != nil {
			return err
		}
	}
	if len(violations) > 0 {
		for _, v := range violations {
			fmt.Fprintln(human, "VIOLATION:", v)
		}
		return fmt.Errorf("%d invariant violation(s)", len(violations))
	}
	if res.Unsettled > 0 {
		// Every accepted order must end: one that did not within --drain is
		// stuck somewhere in the pipeline, and that is a failed run.
		return fmt.Errorf("%d accepted order(s) neither completed nor cancelled within --drain %s", res.Unsettled, drain)
	}
	fmt.Fprintln(human, "invariants: ok (stock balanced, at most one capture per order, no charge on cancelled orders)")
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printResult(w io.Writer, res load.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\ntarget rate\t%.0f/s\tsent\t%d\taccepted\t%d (%.0f/s)\t\n", res.Rate, res.Sent, res.Accepted, res.AcceptedPerSec)
	fmt.Fprintf(tw, "completed\t%d\tcancelled\t%d\tsettled/s\t%.0f\t\n", res.Completed, res.Cancelled, res.SettledPerSec)
	fmt.Fprintf(tw, "unsettled\t%d\t\t\t\t\t\n", res.Unsettled)
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nlatency (ms)\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, l := range []struct {
		name string
		l    load.Latency
	}{{"accept", res.Accept}, {"completion", res.Completion}} {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", l.name, l.l.P50, l.l.P90, l.l.P99, l.l.P999, l.l.Max)
	}
	tw.Flush()
	if len(res.CancelReasons) > 0 {
		fmt.Fprintf(w, "cancel reasons: %s\n", sortedCounts(res.CancelReasons))
	}
	if len(res.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
	} else {
		fmt.Fprintf(w, "errors: %s\n", sortedCounts(res.Errors))
	}
}

func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func writeJSONFile(path string, stdout io.Writer, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if path == "-" {
		_, err = fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write --json %s: %w", path, err)
	}
	return nil
}

// rateValue is a rate flag: a bare number of orders per second, or N/s,
// N/m or N/h.
type rateValue float64

func (r *rateValue) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) }

func (r *rateValue) Set(v string) error {
	num, unit, hasUnit := strings.Cut(strings.TrimSpace(v), "/")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return fmt.Errorf("want orders per second such as 300 or 300/s, got %q", v)
	}
	switch {
	case !hasUnit, unit == "s":
	case unit == "m":
		f /= 60
	case unit == "h":
		f /= 3600
	default:
		return fmt.Errorf("unit %q: use /s, /m or /h", unit)
	}
	*r = rateValue(f)
	return nil
}

// startCPUProfile profiles this process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// adminToken is the token load and dlq send: the one given, else the dev admin
// token of the `ordermesh run` whose data directory is data.
func adminToken(token, data string) (string, error) {
	if token != "" {
		return token, nil
	}
	tok, err := devToken(data)
	if err == nil && tok == "" {
		err = usagef("no token: pass --token TOKEN (an admin JWT or API key), or --data DIR of an `ordermesh run` (%s has no %s)", data, DevTokenFile)
	}
	return tok, err
}

// devToken reads the development admin token `ordermesh run` wrote in data
// ("" when there is none, or no data directory was given).
func devToken(data string) (string, error) {
	if data == "" {
		return "", nil
	}
	raw, err := os.ReadFile(filepath.Join(data, DevTokenFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// progressPrinter draws load's progress on stderr: on a terminal one line
// redrawn in place; in a log, a line every 5 seconds.
func progressPrinter(stderr io.Writer) func(load.Progress) {
	tty := isTerminal(stderr)
	var lastPrinted time.Duration
	return func(p load.Progress) {
		if !tty && p.Elapsed-lastPrinted < 5*time.Second {
			return
		}
		lastPrinted = p.Elapsed
		frac := min(1, p.Elapsed.Seconds()/p.Duration.Seconds())
		bar := strings.Repeat("#", int(frac*20)) + strings.Repeat(".", 20-int(frac*20))
		end := "\n"
		if tty {
			end = "   \r"
		}
		fmt.Fprintf(stderr, "%6.1fs [%s] rate %6.0f/s  in-flight %5d  accepted %7d  settled %7d  errors %d%s",
			p.Elapsed.Seconds(), bar, p.CurrentRate, p.InFlight, p.Accepted, p.Completed, p.Errors, end)
	}
}

// searchMax runs load --max: trials from rate, each step long, for the
// highest rate whose completion p99 is within slo. It records the trials
// in report.
func searchMax(ctx context.Context, r *load.Runner, rate float64, step, slo time.Duration, human, stderr io.Writer, report map[string]any) (load.Result, error) {
	fmt.Fprintf(stderr, "searching for the highest rate with completion p99 ≤ %s and no errors, %s per trial\n", slo, step)
	best, runs := r.Max(ctx, rate, step, slo, func(res load.Result, ok bool) {
		verdict := "FAIL"
		if ok {
			verdict = "ok"
		}
		fmt.Fprintf(stderr, "trial %7.0f/s: settled %7.0f/s, completion p99 %7.1f ms, errors %d, unsettled %d → %s\n",
			res.Rate, res.SettledPerSec, res.Completion.P99, res.ErrorCount(), res.Unsettled, verdict)
	})
	if best.Rate == 0 {
		return best, fmt.Errorf("no trial met the objective (lowest tried: %.0f/s)", runs[len(runs)-1].Rate)
	}
	report["max_sustained_rate"] = best.Rate
	report["trials"] = runs
	fmt.Fprintf(human, "\nhighest sustained rate: %.0f orders/s (completion p99 %.1f ms ≤ %s)\n", best.Rate, best.Completion.P99, slo)
	return best, nil
}

// checkLoadFlags says which of load's flags is out of range.
func checkLoadFlags(target string, rate, mix float64, follow string, durations map[string]time.Duration) error {
	for _, name := range slices.Sorted(maps.Keys(durations)) {
		if d := durations[name]; d <= 0 {
			return usagef("--%s must be positive, got %s", name, d)
		}
	}
	switch {
	case rate <= 0 || rate > 100000:
		return usagef("--rate must be between 0 and 100000 orders/s, got %g", rate)
	case mix < 0 || mix > 1:
		return usagef("--mix must be between 0 and 1, got %g", mix)
	case follow != load.FollowStream && follow != load.FollowOrder:
		return usagef("--follow must be stream or order, got %q", follow)
	case !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://"):
		return usagef("--target %q: want an http(s):// URL", target)
	}
	return nil
}

// loadProcess sets up the load generator's own process: one P unless
// GOMAXPROCS says otherwise, and its CPU profile if asked. stop ends the
// profile.
func loadProcess(cpuProfile string) (stop func(), err error) {
	// The load generator usually shares its machine with the system under
	// test. One P keeps it from waking a second thread for each request and
	// response, which cost more CPU than the requests themselves; GOMAXPROCS
	// in the environment overrides it.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if cpuProfile == "" {
		return func() {}, nil
	}
	return startCPUProfile(cpuProfile)
}
