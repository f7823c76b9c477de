// Package gateway is ordermesh's edge: it proxies /api/… to service
// instances, choosing among them with a per-upstream balancing policy.
package gateway

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Instance is one upstream service instance with its live statistics.
type Instance struct {
	URL    *url.URL
	Weight int // smooth weighted round robin; 1 if unset

	inflight atomic.Int64 // requests in progress
	ewmaNs   atomic.Int64 // exponentially weighted latency, nanoseconds
	healthy  atomic.Bool  // active health checks and passive ejection
}

// NewInstance parses an instance URL ("http://host:port" or with a
// ";w=N" weight suffix).
func NewInstance(raw string) (*Instance, error) {
	weight := 1
	if base, w, ok := cutLast(raw, ";w="); ok {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("instance %q: weight must be 1-1000", raw)
		}
		raw, weight = base, n
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("instance %q: want http(s)://host:port", raw)
	}
	in := &Instance{URL: u, Weight: weight}
	in.healthy.Store(true)
	return in, nil
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// Healthy reports whether the instance may receive requests.
func (in *Instance) Healthy() bool { return in.healthy.Load() }

// SetHealthy marks the instance in or out of rotation.
func (in *Instance) SetHealthy(ok bool) { in.healthy.Store(ok) }

// Inflight is the number of requests in progress.
func (in *Instance) Inflight() int64 { return in.inflight.Load() }

// Begin counts a request in; the returned function counts it out and
// feeds its latency into the EWMA.
func (in *Instance) Begin() (done func()) {
	in.inflight.Add(1)
	start := time.Now()
	return func() {
		in.inflight.Add(-1)
		in.observe(time.Since(start))
	}
}

const ewmaAlpha = 0.2

func (in *Instance) observe(d time.Duration) {
	for {
		old := in.ewmaNs.Load()
		next := int64(d)
		if old != 0 {
			next = int64(ewmaAlpha*float64(d) + (1-ewmaAlpha)*float64(old))
		}
		if in.ewmaNs.CompareAndSwap(old, next) {
			return
		}
	}
}

// ErrNoInstance means every instance is unhealthy or excluded.
var ErrNoInstance = errors.New("no healthy upstream instance")

// Balancer picks an instance for a request. key is the routing key for
// hashing policies (subject, header or client IP); exclude lists instances
// already tried for this request.
type Balancer interface {
	Pick(key string, exclude map[*Instance]bool) (*Instance, error)
}

func candidates(all []*Instance, exclude map[*Instance]bool) []*Instance {
	out := make([]*Instance, 0, len(all))
	for _, in := range all {
		if in.Healthy() && !exclude[in] {
			out = append(out, in)
		}
	}
	return out
}

// RoundRobin takes instances in turn.
type RoundRobin struct {
	instances []*Instance
	next      atomic.Uint64
}

// NewRoundRobin returns a round-robin balancer over instances.
func NewRoundRobin(instances []*Instance) *RoundRobin { return &RoundRobin{instances: instances} }

// Pick returns the next eligible instance.
func (b *RoundRobin) Pick(_ string, exclude map[*Instance]bool) (*Instance, error) {
	n := len(b.instances)
	start := b.next.Add(1)
	for i := range n {
		in := b.instances[(int(start)+i)%n]
		if in.Healthy() && !exclude[in] {
			return in, nil
		}
	}
	return nil, ErrNoInstance
}

// SmoothWeighted is nginx's smooth weighted round robin: over every cycle
// of sum(weights) picks each instance is chosen exactly its weight times,
// interleaved rather than in bursts.
type SmoothWeighted struct {
	mu        sync.Mutex
	instances []*Instance
	current   []int
}

// NewSmoothWeighted returns a smooth weighted round-robin balancer.
func NewSmoothWeighted(instances []*Instance) *SmoothWeighted {
	return &SmoothWeighted{instances: instances, current: make([]int, len(instances))}
}

// Pick returns the eligible instance with the highest current weight.
func (b *SmoothWeighted) Pick(_ string, exclude map[*Instance]bool) (*Instance, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	best, total := -1, 0
	for i, in := range b.instances {
		if !in.Healthy() || exclude[in] {
			continue
		}
		w := max(in.Weight, 1)
		b.current[i] += w
		total += w
		if best < 0 || b.current[i] > b.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil, ErrNoInstance
	}
	b.current[best] -= total
	return b.instances[best], nil
}

// LeastConnections picks the instance with the fewest requests in flight.
type LeastConnections struct {
	instances []*Instance
	next      atomic.Uint64 // rotates the start, so ties spread
}

// NewLeastConnections returns a least-connections balancer.
func NewLeastConnections(instances []*Instance) *LeastConnections {
	return &LeastConnections{instances: instances}
}

// Pick returns the least-loaded eligible instance.
func (b *LeastConnections) Pick(_ string, exclude map[*Instance]bool) (*Instance, error) {
	n := len(b.instances)
	start := int(b.next.Add(1))
	var best *Instance
	for i := range n {
		in := b.instances[(start+i)%n]
		if !in.Healthy() || exclude[in] {
			continue
		}
		if best == nil || in.Inflight() < best.Inflight() {
			best = in
		}
	}
	if best == nil {
		return nil, ErrNoInstance
	}
	return best, nil
}

// P2C is "power of two choices" on EWMA latency: it samples two eligible
// instances at random and takes the one with the lower latency × load.
type P2C struct{ instances []*Instance }

// NewP2C returns a power-of-two-choices balancer.
func NewP2C(instances []*Instance) *P2C { return &P2C{instances: instances} }

func p2cCost(in *Instance) float64 {
	lat := float64(in.ewmaNs.Load())
	if lat == 0 {
		lat = 1 // unmeasured: cheap, so it gets tried
	}
	return lat * float64(in.Inflight()+1)
}

// Pick returns the cheaper of two random eligible instances.
func (b *P2C) Pick(_ string, exclude map[*Instance]bool) (*Instance, error) {
	c := candidates(b.instances, exclude)
	switch len(c) {
	case 0:
		return nil, ErrNoInstance
	case 1:
		return c[0], nil
	}
	i := rand.IntN(len(c))
	j := rand.IntN(len(c) - 1)
	if j >= i {
		j++
	}
	if p2cCost(c[j]) < p2cCost(c[i]) {
		return c[j], nil
	}
	return c[i], nil
}

// HashRing is consistent hashing with virtual nodes and bounded load: a
// key goes to the first instance clockwise from its hash whose requests in
// flight stay within (1+Epsilon) × the average, so one hot key cannot
// overload an instance and adding an instance moves about 1/N of keys.
type HashRing struct {
	instances []*Instance
	points    []uint64 // sorted
	owner     map[uint64]*Instance
	// Epsilon is the load slack above the average; 0.25 means 125%.
	Epsilon float64
}

// VirtualNodes is how many points each instance has on the ring.
const VirtualNodes = 160

// NewHashRing returns a consistent-hash balancer.
func NewHashRing(instances []*Instance, epsilon float64) *HashRing {
	r := &HashRing{instances: instances, owner: map[uint64]*Instance{}, Epsilon: epsilon}
	for _, in := range instances {
		for v := range VirtualNodes {
			h := hash64(in.URL.String() + "#" + strconv.Itoa(v))
			r.points = append(r.points, h)
			r.owner[h] = in
		}
	}
	sort.Slice(r.points, func(i, j int) bool { return r.points[i] < r.points[j] })
	return r
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	x := h.Sum64()
	// FNV-1a clusters similar inputs on the ring; finish with a mixer.
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// Cap is the most requests an instance may have in flight before keys
// spill over to the next one on the ring.
func (r *HashRing) Cap() int64 {
	var total int64
	eligible := 0
	for _, in := range r.instances {
		if in.Healthy() {
			total += in.Inflight()
			eligible++
		}
	}
	if eligible == 0 {
		return 0
	}
	return int64(math.Ceil(float64(total+1) / float64(eligible) * (1 + r.Epsilon)))
}

// Pick returns the owner of key, or the next instance clockwise with room.
func (r *HashRing) Pick(key string, exclude map[*Instance]bool) (*Instance, error) {
	if len(r.points) == 0 {
		return nil, ErrNoInstance
	}
	limit := r.Cap()
	h := hash64(key)
	start := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
	seen := map[*Instance]bool{}
	for i := range r.points {
		in := r.owner[r.points[(start+i)%len(r.points)]]
		if seen[in] {
			continue
		}
		seen[in] = true
		if in.Healthy() && !exclude[in] && in.Inflight() < limit {
			return in, nil
		}
		if len(seen) == len(r.instances) {
			break
		}
	}
	return nil, ErrNoInstance
}

// NewBalancer returns the balancer named policy: round_robin, weighted,
// least_conn, p2c or hash.
func NewBalancer(policy string, instances []*Instance) (Balancer, error) {
	switch policy {
	case "", "round_robin":
		return NewRoundRobin(instances), nil
	case "weighted":
		return NewSmoothWeighted(instances), nil
	case "least_conn":
		return NewLeastConnections(instances), nil
	case "p2c":
		return NewP2C(instances), nil
	case "hash":
		return NewHashRing(instances, 0.25), nil
	}
	return nil, fmt.Errorf("unknown balancing policy %q (round_robin, weighted, least_conn, p2c, hash)", policy)
}
