package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp means --help was asked for and printed: exit 0.
var errHelp = errors.New("help printed")

// envName is the environment variable for a flag: nats-listen →
// ORDERMESH_NATS_LISTEN.
func envName(flagName string) string {
	return "ORDERMESH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet returns a flag set whose usage text shows the command's
// synopsis, its flags and their environment variables (see printUsage).
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(stderr, synopsis, fs, nil) }
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from its ORDERMESH_* environment variable. Flags may follow
// positional arguments (ordermesh dlq show 7 --nats …).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, _, err := parseFlagsGiven(fs, args)
	return pos, err
}

// parseFlagsGiven is parseFlags that also reports which flags the command
// line gave (not the environment).
func parseFlagsGiven(fs *flag.FlagSet, args []string) ([]string, map[string]bool, error) {
	var positional []string
	// The flag package prints the whole usage after every mistake; only
	// --help does here, and a mistake gets one line that says what to fix.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() { fs.Usage = usage; fs.SetOutput(out) }()
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, nil, errHelp
			}
			return nil, nil, flagError(fs, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usagef("$%s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	return positional, given, err
}

// parseFlagsOnly is parseFlags for a command that takes no arguments.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s takes no arguments, got %q", fs.Name(), pos)
	}
	return nil
}
