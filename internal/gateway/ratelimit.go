package gateway

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limit is a GCRA rate: Rate requests per Period, with bursts of up to
// Burst at once.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// ParseLimit reads "100/m", "100/m,burst=20", "5/s", "1000/h" or
// "50/10s".
func ParseLimit(s string) (Limit, error) {
	rate, rest, _ := strings.Cut(s, ",")
	n, per, ok := strings.Cut(rate, "/")
	l := Limit{}
	var err error
	if l.Rate, err = strconv.Atoi(n); !ok || err != nil || l.Rate < 1 {
		return Limit{}, fmt.Errorf("%q: want N/UNIT such as 100/m (N ≥ 1)", s)
	}
	switch per {
	case "s":
		l.Period = time.Second
	case "m":
		l.Period = time.Minute
	case "h":
		l.Period = time.Hour
	default:
		if l.Period, err = time.ParseDuration(per); err != nil || l.Period <= 0 {
			return Limit{}, fmt.Errorf("%q: the period must be s, m, h or a duration such as 10s", s)
		}
	}
	l.Burst = l.Rate
	if rest != "" {
		b, ok := strings.CutPrefix(rest, "burst=")
		if l.Burst, err = strconv.Atoi(b); !ok || err != nil || l.Burst < 1 {
			return Limit{}, fmt.Errorf("%q: want burst=N (N ≥ 1) after the comma", s)
		}
	}
	return l, nil
}

// Quota is the limit as the RateLimit-Policy header states it: q requests
// per w seconds.
func (l Limit) quota() (q int, w int) {
	return l.Rate, max(1, int(l.Period/time.Second))
}

// burstQuota is the burst as a quota: Burst requests per the seconds the
// bucket takes to refill them.
func (l Limit) burstQuota() (q int, w int) {
	return l.Burst, max(1, int(time.Duration(l.Burst)*l.Period/time.Duration(max(l.Rate, 1))/time.Second))
}

// Decision is a limiter's answer for one request.
type Decision struct {
	Allowed    bool
	Remaining  int
	RetryAfter time.Duration // when refused: until one more would pass
	ResetAfter time.Duration // until the caller is back to a full burst
}

// RateLimiter decides whether the request counted under key passes l.
type RateLimiter interface {
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
}

// LocalLimiter is GCRA in process memory: exact for one gateway.
type LocalLimiter struct {
	seed   maphash.Seed
	shards [64]limiterShard
	now    func() time.Time
}

type limiterShard struct {
	mu  sync.Mutex
	tat map[string]time.Time // theoretical arrival time per key
	ops int
}

// NewLocalLimiter returns an empty in-process limiter.
func NewLocalLimiter() *LocalLimiter {
	l := &LocalLimiter{seed: maphash.MakeSeed(), now: time.Now}
	for i := range l.shards {
		l.shards[i].tat = map[string]time.Time{}
	}
	return l
}

// Allow applies GCRA: each request pushes the key's theoretical arrival
// time on by Period/Rate; a request passes while that stays within
// Burst intervals of now. (The same arithmetic as redis_rate's script.)
func (l *LocalLimiter) Allow(_ context.Context, key string, lim Limit) (Decision, error) {
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	now := l.now()
	interval := lim.Period / time.Duration(lim.Rate)
	burst := interval * time.Duration(lim.Burst)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now)
	tat := sh.tat[key]
	if tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(interval)
	diff := now.Sub(newTAT.Add(-burst))
	if diff < 0 {
		return Decision{RetryAfter: -diff, ResetAfter: tat.Sub(now)}, nil
	}
	sh.tat[key] = newTAT
	return Decision{Allowed: true, Remaining: int(diff / interval), ResetAfter: newTAT.Sub(now)}, nil
}

// sweep drops, every so often, keys whose state has decayed to "fresh",
// so memory follows active callers only.
func (sh *limiterShard) sweep(now time.Time) {
	sh.ops++
	if sh.ops < 1024 {
		return
	}
	sh.ops = 0
	for k, t := range sh.tat {
		if t.Before(now) {
			delete(sh.tat, k)
		}
	}
}

// RedisLimiter is GCRA in Redis, shared by every gateway using the same
// server: one atomic Lua script per request, on Redis's clock
// (go-redis/redis_rate).
type RedisLimiter struct {
	l *redis_rate.Limiter
}

// NewRedisLimiter returns a limiter on the Redis at url
// (redis://host:port/db).
func NewRedisLimiter(url string) (*RedisLimiter, *redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("--redis %s: %w (want redis://HOST:PORT/DB)", url, err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, 250*time.Millisecond, 250*time.Millisecond
	// Redis down must cost a request little: one quick dial, no retries,
	// then --rate-limit-on-error decides.
	opt.MaxRetries, opt.DialerRetries = 0, 1
	rdb := redis.NewClient(opt)
	return &RedisLimiter{l: redis_rate.NewLimiter(rdb)}, rdb, nil
}

func (r *RedisLimiter) Allow(ctx context.Context, key string, lim Limit) (Decision, error) {
	res, err := r.l.Allow(ctx, "ordermesh:"+key, redis_rate.Limit{Rate: lim.Rate, Burst: lim.Burst, Period: lim.Period})
	if err != nil {
		return Decision{}, err
	}
	return Decision{Allowed: res.Allowed > 0, Remaining: res.Remaining, RetryAfter: res.RetryAfter, ResetAfter: res.ResetAfter}, nil
}
