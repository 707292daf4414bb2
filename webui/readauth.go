package webui

import (
	"net/http"
	"strings"
)

// Reads are open unless the cluster's read-auth setting is on (hydra node
// --read-auth, hydra config set read-auth=true): then every read (status,
// jobs and results, the event stream, /metrics, the UI's page and assets)
// needs a viewer or admin credential, as a bearer token, as ?token= (the UI
// link), or as the cookie a ?token= request sets so that the page's assets,
// images and event stream carry it. The cookie is never accepted for a
// write: writes need the bearer header (no cross-site request can send one).
// /healthz stays open for health checks, without the reason when unhealthy.

// readCookie is the cookie that carries a read credential for the UI.
const readCookie = "hydra_read"

// ReadCookier is implemented by a Backend whose read cookie carries a value derived from the
// credential, not the credential: browsers send a host's cookies to every port of it, and a
// cookie holding the credential (often the admin token) handed other services on the machine a
// bearer token for writes. Without it the cookie holds the credential itself.
type ReadCookier interface {
	// ReadCookie is the cookie's value for credential tok ("" if tok is none).
	ReadCookie(tok string) string
	// AuthorizeReadCookie is the role of the credential whose cookie value is v ("" if none).
	AuthorizeReadCookie(v string) string
}

// readCookieValue is what the read cookie carries for tok, a credential mayRead took.
func (s *server) readCookieValue(tok string) string {
	if rc, ok := s.cfg.Backend.(ReadCookier); ok {
		if v := rc.ReadCookie(tok); v != "" {
			return v
		}
	}
	return tok
}

// cookieRole is the role the read cookie's value v stands for: a derived value (ReadCookier),
// or a credential itself (a cookie an older build set, or a client that sets it by hand).
func (s *server) cookieRole(v string) string {
	if rc, ok := s.cfg.Backend.(ReadCookier); ok {
		if role := rc.AuthorizeReadCookie(v); role != "" {
			return role
		}
	}
	return s.roleOf(v)
}

// forgetReadCookie answers DELETE /api/v1/read-cookie with an expired read cookie: the page's
// "Forget token" calls it, since the cookie is HttpOnly and the page cannot clear it itself (it
// would last until the browser session ends). It needs no credential, as it changes nothing on
// the node; being a DELETE, no other site's form or plain fetch can send it (a cross-origin one
// needs a CORS preflight, which this API never allows).
func (s *server) forgetReadCookie(w http.ResponseWriter, r *http.Request) {
	c := readAuthCookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
	WriteJSON(w, http.StatusOK, map[string]string{"status": "cleared"})
}

// readAuthCookie is the read cookie carrying tok. The link that sets it and the route that
// expires it build it here: a browser replaces a cookie only when name, path and domain match.
func readAuthCookie(tok string) *http.Cookie {
	return &http.Cookie{Name: readCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

// readAuthOn reports whether the cluster asks for a credential on reads.
func (s *server) readAuthOn() bool {
	cb, ok := s.cfg.Backend.(ConfigBackend)
	return ok && cb.ClusterConfig().ReadAuth
}

// readGate enforces the read-auth setting in front of every route.
func (s *server) readGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		ok, tok, fromQuery := s.mayRead(r)
		if !ok {
			if r.URL.Path == "/healthz" {
				s.healthzBare(w)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="hydra"`)
			writeError(w, http.StatusUnauthorized, "this cluster requires a credential for reads (read-auth): open the link with ?token=, or send 'Authorization: Bearer <token>' (hydra token create --role viewer makes one)")
			return
		}
		if fromQuery {
			http.SetCookie(w, readAuthCookie(s.readCookieValue(tok)))
		}
		next.ServeHTTP(w, r)
	})
}

// mayRead reports whether r may read now: read-auth is off, or r carries an admin or viewer
// credential (a bearer token, ?token= — then fromQuery, and tok is it — or the read cookie).
// It is asked again while an event stream is open (hub.ServeHTTP), so turning read-auth on or
// revoking a credential also ends the streams it no longer allows.
func (s *server) mayRead(r *http.Request) (ok bool, tok string, fromQuery bool) {
	if !s.readAuthOn() {
		return true, "", false
	}
	tok = bearer(r)
	if tok == "" {
		if q := strings.TrimSpace(r.URL.Query().Get("token")); q != "" && len(q) <= 256 {
			tok, fromQuery = q, true
		}
	}
	var role string
	if tok != "" {
		role = s.roleOf(tok)
	} else if c, err := r.Cookie(readCookie); err == nil && len(c.Value) <= 256 {
		role = s.cookieRole(c.Value)
	}
	return role == RoleAdmin || role == RoleViewerCred, tok, fromQuery
}

// healthzBare answers /healthz without the reason (read-auth on, no
// credential): the status code is what health checks look at.
func (s *server) healthzBare(w http.ResponseWriter) {
	if s.cfg.Backend.Healthy() != nil {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy"})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
