package webui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
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
	// ErrConflict: the cluster's state refuses the request (a node that is a member with
	// another role already, the only server leaving): 409.
	ErrConflict = errors.New("conflict")
)

// Credential roles.
const (
	RoleAdmin      = "admin"
	RoleViewerCred = "viewer"
)

// Admission is implemented by backends that manage membership: approving
// and refusing nodes, evicting them, join tokens, API credentials and the
// admission mode. auth is the caller's credential, which the cluster's
// leader checks again. Errors wrapping ErrInvalid answer 400, ErrForbidden 403,
// ErrNotFound 404 (no such node or token), ErrConflict 409, ErrUnavailable (or
// a deadline) 503 with Retry-After; others are the server's own failure, 500.
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

// WithCredential returns a context that carries cred as the API credential the HTTP layer
// accepted (Credential reads it): for a caller inside the process that acts for a user who
// presented cred, as a test calling a backend method directly, past the HTTP layer, does.
func WithCredential(ctx context.Context, cred string) context.Context {
	return context.WithValue(ctx, authKey, cred)
}

// bearer returns the token of an "Authorization: Bearer <token>" header, or
// "". The scheme is matched without regard to case (RFC 9110 §11.1): a
// client that sends "bearer" is not refused a write it may make.
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
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

// maxKeyLen bounds a fingerprint, peer ID, node name, role or mode in a membership request.
const maxKeyLen = 128

// required checks a required field of a membership request: present (not empty or blank; `{}`
// and `null` bodies have none) and at most maxKeyLen bytes.
func required(name, v string) error {
	switch {
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("%s required", name)
	case len(v) > maxKeyLen:
		return fmt.Errorf("%s: at most %d bytes", name, maxKeyLen)
	}
	return nil
}

// checker is a request body that checks its required fields before the backend sees it.
type checker interface{ check() error }

func (r *approveRequest) check() error {
	if len(r.Role) > maxKeyLen {
		return fmt.Errorf("role: at most %d bytes", maxKeyLen)
	}
	return required("fingerprint", r.Fingerprint)
}
func (r *denyRequest) check() error   { return required("fingerprint", r.Fingerprint) }
func (r *removeRequest) check() error { return required("node", r.Node) }
func (r *admitRequest) check() error  { return required("mode", r.Mode) }
func (r *TokenRequest) check() error {
	if len(r.TTL) > maxKeyLen {
		return fmt.Errorf("ttl: at most %d bytes", maxKeyLen)
	}
	return required("role", r.Role)
}

// adminHandler is every membership request with a JSON body: decode it, call the backend's
// Admission with the caller's credential (which the leader checks again) under a bounded
// context, and answer the result with code, or the error through adminErr.
func adminHandler[Req, Res any](s *server, what string, code int, call func(ctx context.Context, a Admission, req Req, auth string) (Res, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !decodeJSON(w, r, &req) {
			return
		}
		if c, ok := any(&req).(checker); ok {
			if err := c.check(); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		a, ok := s.admission(w)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		res, err := call(ctx, a, req, credential(r))
		if err != nil {
			s.adminErr(w, what, err)
			return
		}
		WriteJSON(w, code, res)
	}
}

// adminErr answers a membership request's error by its kind (Admission). The message is the
// error's own: the route names the operation, and the CLI prefixes its command's name.
func (s *server) adminErr(w http.ResponseWriter, what string, err error) {
	s.kindError(w, what, err)
}

// kindError answers err by its kind, the one mapping of the routes whose backends mark their
// errors (membership, leave, trust reset, settings, jobs after their own cases): ErrUnavailable
// or a deadline 503 (retry), ErrInvalid 400, ErrForbidden 403, ErrNotFound 404, ErrConflict 409;
// anything else is the server's own failure, 500, logged with what (the operation).
func (s *server) kindError(w http.ResponseWriter, what string, err error, attrs ...any) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded): // no leader (yet), or shutting down: retry
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	default:
		s.cfg.Logger.Warn("request failed", append([]any{"op", what, "err", err}, attrs...)...)
	}
	writeError(w, code, err.Error())
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
	id := r.PathValue("id")
	if err := required("token ID", id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.RevokeToken(ctx, id, credential(r)); err != nil {
		s.adminErr(w, "revoke token", err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "revoked"})
}
