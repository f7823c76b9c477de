package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/gateway"
	"github.com/ordermesh/ordermesh/internal/platform/httpx"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
)

// The console's session: the operator signs in once with an admin token
// or API key, which the gateway keeps in a cookie no script can read
// (HttpOnly; SameSite=Strict; Secure over TLS) and takes as the
// credential of the console's /api/ calls. A state-changing call also
// needs the session's CSRF token in X-CSRF-Token: the console holds it in
// memory, from the sign-in's answer or GET /console/session, which only
// pages of the same origin can read.
const (
	sessionCookie = "ordermesh_console"
	csrfHeader    = "X-CSRF-Token"
	// sessionTTL bounds a console session (the token's own expiry still
	// applies to every call).
	sessionTTL = 12 * time.Hour
)

// consoleSessions signs CSRF tokens and checks sign-ins.
type consoleSessions struct {
	key  []byte // HMAC key of the CSRF tokens: the internal secret, shared by the gateways, or this process's own
	auth *gateway.Authenticator
	// edge applies its failed-authentication limits to sign-ins, so the
	// sign-in is no way around them.
	edge *gateway.Edge
	log  *slog.Logger
}

func newConsoleSessions(internalSecret string, auth *gateway.Authenticator, edge *gateway.Edge, log *slog.Logger) *consoleSessions {
	key := []byte(internalSecret)
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	return &consoleSessions{key: key, auth: auth, edge: edge, log: log}
}

// csrf is the CSRF token of the session whose cookie holds credential.
func (cs *consoleSessions) csrf(credential string) string {
	m := hmac.New(sha256.New, cs.key)
	m.Write([]byte("console csrf\x00" + credential))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// mount serves the session's routes.
func (cs *consoleSessions) mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /console/session", cs.signIn)
	mux.HandleFunc("GET /console/session", cs.current)
	mux.HandleFunc("DELETE /console/session", cs.signOut)
}

// admin authenticates credential and says who it is, if an admin.
func (cs *consoleSessions) admin(r *http.Request, credential string) (identity.Identity, error) {
	probe := r.Clone(r.Context())
	probe.Header = http.Header{"Authorization": {"Bearer " + credential}}
	id, err := cs.auth.Authenticate(probe)
	switch {
	case err != nil:
		return id, err
	case !id.Has(identity.Admin):
		return id, apperr.New(apperr.Forbidden, "token", "the console needs an admin token or admin API key; a customer's gets no data")
	}
	return id, nil
}

func (cs *consoleSessions) signIn(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := httpx.Decode(r, &in); err != nil {
		httpx.Error(w, r, cs.log, err)
		return
	}
	if in.Token == "" || len(in.Token) > 8<<10 {
		httpx.Error(w, r, cs.log, apperr.Invalidf("token", "give the admin token or API key to sign in with"))
		return
	}
	if cs.edge.GuardSignIn(w, r, nil) {
		return
	}
	id, err := cs.admin(r, in.Token)
	if cs.edge.GuardSignIn(w, r, err) {
		return
	}
	if err != nil {
		httpx.Error(w, r, cs.log, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: in.Token, Path: "/", MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	httpx.JSON(w, http.StatusOK, map[string]string{"subject": id.Subject, "csrf": cs.csrf(in.Token)})
}

func (cs *consoleSessions) current(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		httpx.Error(w, r, cs.log, apperr.New(apperr.Unauthorized, "", "not signed in"))
		return
	}
	id, err := cs.admin(r, c.Value)
	if err != nil {
		httpx.Error(w, r, cs.log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]string{"subject": id.Subject, "csrf": cs.csrf(c.Value)})
}

func (cs *consoleSessions) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && !hmac.Equal([]byte(r.Header.Get(csrfHeader)), []byte(cs.csrf(c.Value))) {
		httpx.Error(w, r, cs.log, apperr.New(apperr.Forbidden, csrfHeader, "signing out needs the session's CSRF token"))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// credential lets the console's session authenticate an /api/ call that
// carries no Authorization of its own: its cookie becomes the bearer
// credential, once a state-changing call has shown the session's CSRF
// token.
func (cs *consoleSessions) credential(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil || r.Header.Get("Authorization") != "" {
			next.ServeHTTP(w, r)
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
		if !safe && !hmac.Equal([]byte(r.Header.Get(csrfHeader)), []byte(cs.csrf(c.Value))) {
			httpx.Error(w, r, cs.log, apperr.New(apperr.Forbidden, csrfHeader, "a console call that changes state needs the session's CSRF token in %s", csrfHeader))
			return
		}
		r.Header.Set("Authorization", "Bearer "+c.Value)
		next.ServeHTTP(w, r)
	})
}
