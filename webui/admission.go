package webui

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Authorizer is implemented by backends that hold several API credentials
// (hashed, with roles: docs/security.md). Authorize returns the role of tok,
// RoleAdmin or RoleViewer, or "" if tok is no credential of the cluster.
// Backends without it are checked against Backend.Token (admin).
type Authorizer interface {
	Authorize(tok string) string
}

// Errors for backends, answered with their status code whatever their text says.
var (
	// ErrForbidden: the cluster refused the caller (the leader checks the credential again).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the node, token or credential named is unknown.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request itself is wrong (a bad value, a name that fits no node or
	// several), so that repeating it cannot succeed: 400. A backend error that wraps none of
	// these errors is the server's own failure: 500 where a route says so.
	ErrInvalid = errors.New("invalid request")
)

// Credential roles.
const (
	RoleAdmin      = "admin"
	RoleViewerCred = "viewer"
)

// Admission is implemented by backends that manage membership: approving
// and refusing nodes, evicting them, join tokens, API credentials and the
// admission mode. auth is the caller's credential, which the cluster's
// leader checks again. Errors wrapping ErrForbidden answer 403, ErrNotFound
// 404 (no such node or token), ErrUnavailable 503; others 400.
type Admission interface {
	Approve(ctx context.Context, key, role, auth string) (PendingResult, error)
	Deny(ctx context.Context, key, auth string) (PendingResult, error)
	Remove(ctx context.Context, node, auth string) (PendingResult, error)
	CreateToken(ctx context.Context, req TokenRequest, auth string) (TokenCreated, error)
	Tokens() []TokenInfo
	RevokeToken(ctx context.Context, id, auth string) error
	SetAdmit(ctx context.Context, mode, auth string) error
}

// PendingNode is a node waiting for approval (Status.Pending).
type PendingNode struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Addrs       []string  `json:"addrs"`
	Fingerprint string    `json:"fingerprint"`
	LastSeen    time.Time `json:"last_seen"`
}

// PendingResult names the node an approve, deny or remove acted on.
type PendingResult struct {
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
	Role        string `json:"role,omitempty"`
}

// TokenRequest is the body of POST /api/v1/tokens: a join token (role
// member or worker) or an API credential (admin or viewer). TTL is a Go
// duration ("24h"; join tokens default to 24h, credentials never expire);
// Uses bounds a join token's admissions (0: any number).
type TokenRequest struct {
	Role string `json:"role"`
	TTL  string `json:"ttl,omitempty"`
	Uses int    `json:"uses,omitempty"`
}

// TokenCreated is the answer: the secret, shown once.
type TokenCreated struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Role    string    `json:"role"`
	Kind    string    `json:"kind"` // join | api
	Expires time.Time `json:"expires,omitzero"`
}

// TokenInfo is one token or credential of GET /api/v1/tokens (no secret).
type TokenInfo struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"` // join | api
	Role    string    `json:"role"`
	Node    string    `json:"node,omitempty"` // a member's own credential
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Uses    int       `json:"uses,omitempty"`
	Used    int       `json:"used,omitempty"`
}

type ctxKey int

const authKey ctxKey = 0

// credential returns the bearer token auth accepted for this request.
func credential(r *http.Request) string {
	s, _ := r.Context().Value(authKey).(string)
	return s
}

// Credential returns the API credential the HTTP layer accepted for the
// request whose context ctx derives from ("" for none): a node forwards it
// with an admin command so that the leader checks it too
// (docs/security.md).
func Credential(ctx context.Context) string {
	s, _ := ctx.Value(authKey).(string)
	return s
}

func bearer(r *http.Request) string {
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(got)
}

// roleOf checks tok against the backend's credentials.
func (s *server) roleOf(tok string) string {
	if tok == "" {
		return ""
	}
	if a, ok := s.cfg.Backend.(Authorizer); ok {
		return a.Authorize(tok)
	}
	want := s.cfg.Backend.Token()
	if want != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
		return RoleAdmin
	}
	return ""
}

func (s *server) admission(w http.ResponseWriter) (Admission, bool) {
	a, ok := s.cfg.Backend.(Admission)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node does not manage membership")
	}
	return a, ok
}

func (s *server) registerAdmission(mux *http.ServeMux) {
	h := func(f http.HandlerFunc) http.Handler { return s.auth(f) }
	mux.Handle("POST /api/v1/approve", h(adminHandler(s, "approve", http.StatusOK,
		func(ctx context.Context, a Admission, req approveRequest, auth string) (PendingResult, error) {
			return a.Approve(ctx, req.Fingerprint, req.Role, auth)
		})))
	mux.Handle("POST /api/v1/deny", h(adminHandler(s, "deny", http.StatusOK,
		func(ctx context.Context, a Admission, req denyRequest, auth string) (PendingResult, error) {
			return a.Deny(ctx, req.Fingerprint, auth)
		})))
	mux.Handle("POST /api/v1/remove", h(adminHandler(s, "remove", http.StatusOK,
		func(ctx context.Context, a Admission, req removeRequest, auth string) (PendingResult, error) {
			return a.Remove(ctx, req.Node, auth)
		})))
	mux.Handle("POST /api/v1/tokens", h(adminHandler(s, "create token", http.StatusCreated,
		func(ctx context.Context, a Admission, req TokenRequest, auth string) (TokenCreated, error) {
			return a.CreateToken(ctx, req, auth)
		})))
	mux.Handle("GET /api/v1/tokens", h(s.listTokens))
	mux.Handle("DELETE /api/v1/tokens/{id}", h(s.revokeToken))
	mux.Handle("POST /api/v1/admit", h(adminHandler(s, "admit", http.StatusOK,
		func(ctx context.Context, a Admission, req admitRequest, auth string) (map[string]string, error) {
			return map[string]string{"admit": req.Mode}, a.SetAdmit(ctx, req.Mode, auth)
		})))
}

// The bodies of the membership requests.
type (
	approveRequest struct {
		Fingerprint string `json:"fingerprint"`
		Role        string `json:"role,omitempty"`
	}
	denyRequest struct {
		Fingerprint string `json:"fingerprint"`
	}
	removeRequest struct {
		Node string `json:"node"`
	}
	admitRequest struct {
		Mode string `json:"mode"`
	}
)

// adminHandler is every membership request with a JSON body: decode it, call the backend's
// Admission with the caller's credential (which the leader checks again) under a bounded
// context, and answer the result with code, or the error through adminErr.
func adminHandler[Req, Res any](s *server, what string, code int, call func(ctx context.Context, a Admission, req Req, auth string) (Res, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decodeJSON(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a, ok := s.admission(w)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		res, err := call(ctx, a, req, credential(r))
		if err != nil {
			adminErr(w, what, err)
			return
		}
		WriteJSON(w, code, res)
	}
}

func adminErr(w http.ResponseWriter, what string, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	} else if errors.Is(err, ErrUnavailable) { // no leader (yet), or shutting down: a retry may succeed
		code = http.StatusServiceUnavailable
	} else if errors.Is(err, ErrForbidden) {
		code = http.StatusForbidden
	} else if errors.Is(err, ErrNotFound) {
		code = http.StatusNotFound
	}
	writeError(w, code, what+": "+err.Error())
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request) {
	a, ok := s.admission(w)
	if !ok {
		return
	}
	WriteJSON(w, http.StatusOK, map[string][]TokenInfo{"tokens": a.Tokens()})
}

func (s *server) revokeToken(w http.ResponseWriter, r *http.Request) {
	a, ok := s.admission(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.RevokeToken(ctx, r.PathValue("id"), credential(r)); err != nil {
		adminErr(w, "revoke token", err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "revoked"})
}
