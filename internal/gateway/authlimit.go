package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// Failed authentication: the limits per address, per API-key prefix and
// across all clients, and the RateLimit fields every limited answer carries.

// isBlocked answers 429 to a client address that is over the failed
// authentication limit, without checking its credentials.
func (e *Edge) isBlocked(w http.ResponseWriter, r *http.Request) bool {
	host := clientHost(r)
	e.blockedMu.Lock()
	until, ok := e.blocked[host]
	if ok && time.Now().After(until) {
		delete(e.blocked, host)
		ok = false
	}
	e.blockedMu.Unlock()
	if !ok {
		return false
	}
	wait := time.Until(until)
	lim, _ := e.limit(ClassAuthFailures, identity.Identity{})
	setRateLimitFields(w.Header(), ClassAuthFailures, lim, Decision{RetryAfter: wait})
	e.fail(w, r, apperr.New(apperr.TooManyRequests, "", "too many failed authentication attempts from %s; retry in %s", host, wait.Round(time.Second)))
	return true
}

// admitFailure counts a failed authentication against the client's
// address, the API key's prefix it presented, and all clients together,
// and answers 429 once one is over its limit (ClassAuthFailures per
// address and per prefix, ClassAuthFailuresAll in all), blocking the
// address for a while: many addresses, each under its own limit, still
// meet the other two.
func (e *Edge) admitFailure(w http.ResponseWriter, r *http.Request) bool {
	host := clientHost(r)
	counts := []struct{ class, key, what string }{{ClassAuthFailures, "ip:" + host, "from " + host}}
	if p := keyPrefix(r); p != "" {
		counts = append(counts, struct{ class, key, what string }{ClassAuthFailures, "key:" + p, "with API keys starting " + p})
	}
	counts = append(counts, struct{ class, key, what string }{ClassAuthFailuresAll, "all", "from all clients"})
	for _, c := range counts {
		lim, _ := e.limit(c.class, identity.Identity{})
		d, err := e.cfg.Limiter.Allow(r.Context(), c.class+"|"+c.key, lim)
		if err != nil || d.Allowed {
			continue
		}
		RateLimited.WithLabelValues(c.class).Inc()
		e.blockedMu.Lock()
		if len(e.blocked) > 100_000 {
			clear(e.blocked) // bounded memory under a spoofing flood
		}
		e.blocked[host] = time.Now().Add(d.RetryAfter)
		e.blockedMu.Unlock()
		setRateLimitFields(w.Header(), c.class, lim, d)
		e.fail(w, r, apperr.New(apperr.TooManyRequests, "", "too many failed authentication attempts %s; retry in %s", c.what, d.RetryAfter.Round(time.Second)))
		return false
	}
	return true
}

// keyPrefix is the first characters of the API key a request presents
// ("" for none): enough to count failures against one key, not enough to
// be a secret.
func keyPrefix(r *http.Request) string {
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.HasPrefix(cred, APIKeyPrefix) || len(cred) < len(APIKeyPrefix)+6 {
		return ""
	}
	return cred[:len(APIKeyPrefix)+6]
}

// setRateLimitFields sets the RateLimit-Policy and RateLimit fields of an
// answer under class's limit lim, after decision d.
func setRateLimitFields(h http.Header, class string, lim Limit, d Decision) {
	q, win := lim.quota()
	policy := fmt.Sprintf(`"%s";q=%d;w=%d`, class, q, win)
	if bq, bw := lim.burstQuota(); bq < q {
		// The burst as a policy of its own: at most bq at once, which
		// the bucket refills in bw seconds.
		policy += fmt.Sprintf(`, "%s;burst";q=%d;w=%d`, class, bq, bw)
	}
	h.Set("RateLimit-Policy", policy)
	reset := d.ResetAfter
	if !d.Allowed {
		reset = d.RetryAfter
		h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
	}
	h.Set("RateLimit", fmt.Sprintf(`"%s";r=%d;t=%d`, class, d.Remaining, ceilSeconds(reset)))
}

// GuardSignIn applies the failed-authentication limits to a credential
// checked outside the edge (the console's sign-in): it answers 429 and
// reports true when the client is blocked, or when err is a failed
// authentication over a limit. Callers answer other errors themselves.
func (e *Edge) GuardSignIn(w http.ResponseWriter, r *http.Request, err error) (answered bool) {
	if err == nil {
		return e.isBlocked(w, r)
	}
	return apperr.KindOf(err) == apperr.Unauthorized && !e.admitFailure(w, r)
}
