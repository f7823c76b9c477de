package gateway

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Cache is the gateway's micro-cache for public GETs (the catalog): each
// answer is kept for TTL plus up to 20% jitter (404s for NegativeTTL), many
// concurrent misses of one URL make one upstream request, and Purge (on
// product.updated) empties it.
type Cache struct {
	TTL, NegativeTTL time.Duration
	MaxEntries       int

	group   singleflight.Group
	mu      sync.RWMutex
	entries map[string]*cached
	gen     uint64 // bumped by Purge; a fetch that began before is not stored
}

type cached struct {
	status  int
	header  http.Header
	body    []byte
	expires time.Time
}

// NewCache returns a cache with the given TTLs (defaults 1s and 250ms).
func NewCache(ttl, negative time.Duration) *Cache {
	if ttl <= 0 {
		ttl = time.Second
	}
	if negative <= 0 {
		negative = 250 * time.Millisecond
	}
	return &Cache{TTL: ttl, NegativeTTL: negative, MaxEntries: 10000, entries: map[string]*cached{}}
}

// Purge drops every entry, and any fetch in flight will not be stored.
func (c *Cache) Purge() {
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	c.mu.Unlock()
}

// cachedHeaders are the upstream headers a cached answer keeps.
var cachedHeaders = []string{"Content-Type", "ETag", "Cache-Control", "Last-Modified"}

// Serve answers r from the cache, filling it through next on a miss.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key := r.URL.RequestURI()
	e, ok := c.fresh(key)
	state := "HIT"
	if !ok {
		state = "MISS"
		v, _, shared := c.group.Do(key, func() (any, error) {
			// A request that missed just before another's fill stored
			// the entry finds it here, rather than asking upstream again.
			if e, ok := c.fresh(key); ok {
				return e, nil
			}
			return c.fill(r, key, next), nil
		})
		e = v.(*cached)
		if shared {
			state = "HIT-SHARED"
		}
	}
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("X-Cache", state)
	if tag := e.header.Get("ETag"); tag != "" && r.Header.Get("If-None-Match") == tag && e.status == http.StatusOK {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(e.body)))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		w.Write(e.body)
	}
}

// fresh is key's entry if it has not expired.
func (c *Cache) fresh(key string) (*cached, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	return e, true
}

// fill makes the one upstream request for key, detached from the caller
// that happened to arrive first (its leaving must not fail the others).
func (c *Cache) fill(r *http.Request, key string, next http.Handler) *cached {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	req := r.Clone(ctx)
	req.Method = http.MethodGet
	req.Header.Del("If-None-Match")
	req.Header.Del("If-Modified-Since")
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, req)
	e := &cached{status: rec.status, header: http.Header{}, body: rec.body.Bytes()}
	for _, k := range cachedHeaders {
		if v := rec.header.Values(k); len(v) > 0 {
			e.header[http.CanonicalHeaderKey(k)] = v
		}
	}
	var ttl time.Duration
	switch e.status {
	case http.StatusOK:
		ttl = c.TTL + time.Duration(rand.Int64N(int64(c.TTL)/5+1))
	case http.StatusNotFound:
		ttl = c.NegativeTTL
	default:
		return e // errors are passed on, never cached
	}
	e.expires = time.Now().Add(ttl)
	c.mu.Lock()
	if c.gen == gen {
		if len(c.entries) >= c.MaxEntries {
			clear(c.entries)
		}
		c.entries[key] = e
	}
	c.mu.Unlock()
	return e
}

// recorder buffers an answer in memory.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
