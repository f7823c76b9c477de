package webhook

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Flags declares the webhook delivery flags.
func (cfg *Config) Flags(fs *flag.FlagSet) {
	fs.Var((*scheduleFlag)(&cfg.Schedule), "webhook-schedule",
		"webhook retry schedule: delays before each attempt, e.g. 0s,5s,5m,30m (default: the Standard Webhooks schedule, 0s to 24h)")
	fs.DurationVar(&cfg.SecretGrace, "webhook-secret-grace", 24*time.Hour, "how long a rotated-out webhook secret keeps signing")
	fs.DurationVar(&cfg.DisableAfter, "webhook-disable-after", 5*24*time.Hour, "disable a webhook endpoint failing continuously this long")
	fs.BoolVar(&cfg.AllowPrivate, "webhook-allow-private", false, "let webhook endpoints be loopback or private addresses (local use only)")
}

// Check says what is wrong with the flags (as parsed: zero is not
// their default there).
func (cfg *Config) Check() error {
	if cfg.SecretGrace <= 0 || cfg.DisableAfter <= 0 {
		return errors.New("--webhook-secret-grace and --webhook-disable-after must be positive")
	}
	return nil
}

// scheduleFlag is --webhook-schedule: comma-separated delays.
type scheduleFlag []time.Duration

func (s *scheduleFlag) String() string {
	if s == nil || *s == nil {
		return ""
	}
	return fmt.Sprint([]time.Duration(*s))
}

func (s *scheduleFlag) Set(v string) error {
	var out []time.Duration
	for _, part := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return fmt.Errorf("want comma-separated non-negative durations such as 0s,5s,5m, got %q", part)
		}
		out = append(out, d)
	}
	*s = out
	return nil
}
