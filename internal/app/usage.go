package app

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// helpWidth is the width the help text is wrapped to.
const helpWidth = 100

// printUsage writes synopsis and the flags of fs that keep accepts (every
// flag when keep is nil): each as --name VALUE on a line of its own, then
// its description, default and environment variable wrapped to helpWidth.
func printUsage(w io.Writer, synopsis string, fs *flag.FlagSet, keep func(*flag.Flag) bool) {
	fmt.Fprintf(w, "%s\n\nFlags (each also settable as ORDERMESH_<FLAG>):\n", synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		if keep != nil && !keep(f) {
			return
		}
		value, usage := flag.UnquoteUsage(f)
		if value != "" {
			value = " " + strings.ToUpper(value)
		}
		fmt.Fprintf(w, "  --%s%s\n", f.Name, value)
		text := usage
		if def := f.DefValue; def != "" && def != "false" && def != "map[]" && def != "[]" {
			text += " (default " + def + ")"
		}
		text += " $" + envName(f.Name)
		for _, line := range wrap(text, helpWidth-6) {
			fmt.Fprintf(w, "      %s\n", line)
		}
	})
}

// wrap breaks text into lines of at most width columns, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

var (
	unknownFlag  = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	invalidValue = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-+([^:]+): (.*)$`)
	needsValue   = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
)

// flagError turns the flag package's error for fs into a usage error that
// names the flag as it is written (--name) and says what to fix.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	see := fmt.Sprintf(" (see ordermesh %s --help)", fs.Name())
	if m := unknownFlag.FindStringSubmatch(msg); m != nil {
		return usagef("unknown flag --%s%s", m[1], see)
	}
	if m := needsValue.FindStringSubmatch(msg); m != nil {
		return usagef("--%s needs a value%s", m[1], see)
	}
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		value, name, why := m[1], m[2], m[3]
		f := fs.Lookup(name)
		if f == nil {
			return usagef("--%s %q: %s", name, value, why)
		}
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				return usagef("--%s %q: not a duration; write it like 30s, 2m or 1h30m", name, value)
			case bool:
				return usagef("--%s=%q: not a boolean; write --%s, --%s=true or --%s=false", name, value, name, name, name)
			case int, int64, uint, uint64:
				return usagef("--%s %q: not a whole number", name, value)
			case float64:
				return usagef("--%s %q: not a number", name, value)
			}
		}
		if why == "parse error" {
			why = "not a valid value"
		}
		return usagef("--%s %q: %s", name, value, why)
	}
	return usagef("%s%s", msg, see)
}
