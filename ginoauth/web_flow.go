package ginoauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/gin-gonic/gin"
)

// maxStateLen bounds the state parameter accepted at the callback.
const maxStateLen = 512

// StartOptions tune one login.
type StartOptions struct {
	// ReturnTo is where to send the browser after login. It is checked with
	// SafeReturnPath; anything unsafe becomes "/".
	ReturnTo string
}

// flowRecord is what flow:{state} holds: everything the callback needs that
// must not travel inside state.
type flowRecord struct {
	ReturnTo string `json:"return_to"`
	// BindingHash is sha256 of the flow cookie's binding value: the callback
	// is accepted only from the browser holding that cookie (login CSRF).
	BindingHash []byte    `json:"binding_hash"`
	CreatedAt   time.Time `json:"created_at"`
}

// CallbackResult is what HandleCallback returns on success.
type CallbackResult struct {
	User     *User
	ReturnTo string // the validated return path, "/" by default
}

// StartOAuth begins a login for identifier (a handle such as alice.bsky.social,
// with or without "@", or a DID). It asks the OAuth client for an
// authorization, keeps the flow record server side under its state, binds the
// flow to this browser with a short-lived flow cookie, and returns the URL to
// redirect the browser to.
//
// Errors: *OAuthFlowError (bad handle: 400; unreachable server: 502) or
// *StorageError (503).
func (m *Manager) StartOAuth(c *gin.Context, identifier string, opts StartOptions) (string, error) {
	ident, err := normalizeIdentifier(identifier)
	if err != nil {
		return "", err
	}
	ctx := c.Request.Context()
	binding := m.flowBinding(c)

	auth, err := m.client.Authorize(ctx, AuthorizeRequest{Identifier: ident, TTL: m.cfg.FlowTTL})
	if err != nil {
		return "", classifyFlowErr(err, FlowServerError, "could not reach the account's authorization server")
	}
	if auth == nil || auth.URL == "" || auth.State == "" || len(auth.State) > maxStateLen {
		return "", &OAuthFlowError{Code: FlowServerError, Message: "the OAuth client returned an unusable authorization", Err: errors.New("empty URL or state")}
	}
	bh := sha256.Sum256([]byte(binding))
	rec := flowRecord{ReturnTo: SafeReturnPath(opts.ReturnTo), BindingHash: bh[:], CreatedAt: m.now()}
	if err := m.setJSON(ctx, flowKeyPrefix+auth.State, rec, m.cfg.FlowTTL); err != nil {
		return "", err
	}
	if err := m.setFlowCookie(c, binding); err != nil {
		return "", err
	}
	m.log.Info("login started", "identifier", ident)
	return auth.URL, nil
}

// HandleCallback completes a login at the redirect URI. In order: the flow
// record for state is consumed atomically (a replayed callback finds
// nothing), the flow cookie must match it, the OAuth client checks error and
// iss and exchanges the code, and a new session (new id) is stored and its
// cookie set. The caller redirects to result.ReturnTo.
//
// Errors: *OAuthFlowError (400, or 502) or *StorageError (503).
func (m *Manager) HandleCallback(c *gin.Context) (*CallbackResult, error) {
	ctx := c.Request.Context()
	params := c.Request.URL.Query()
	state := params.Get("state")
	if state == "" || len(state) > maxStateLen {
		return nil, &OAuthFlowError{Code: FlowInvalidRequest, Message: "the login response is missing its state; please start again"}
	}
	var rec flowRecord
	switch err := m.takeJSON(ctx, flowKeyPrefix+state, &rec); {
	case errors.Is(err, ErrNotFound):
		return nil, &OAuthFlowError{Code: FlowUnknownState, Message: "this login link has expired or was already used; please start again"}
	case err != nil:
		return nil, err
	}
	if !m.flowCookieMatches(c, rec.BindingHash) {
		return nil, &OAuthFlowError{Code: FlowBrowserMismatch, Message: "this login was started in a different browser; please start again here"}
	}
	grant, err := m.client.Callback(ctx, params, m.cfg.SessionTTL)
	if err != nil {
		return nil, classifyFlowErr(err, FlowExchangeFailed, "the login could not be completed; please start again")
	}
	if grant == nil || grant.DID == "" || grant.OAuthSessionID == "" {
		return nil, &OAuthFlowError{Code: FlowExchangeFailed, Message: "the login could not be completed; please start again", Err: errors.New("OAuth client returned an empty grant")}
	}
	user, err := m.startSession(c, grant)
	if err != nil {
		// Do not leave live tokens behind for a session nobody can use.
		m.revoke(ctx, grant.DID, grant.OAuthSessionID, "")
		return nil, err
	}
	return &CallbackResult{User: user, ReturnTo: SafeReturnPath(rec.ReturnTo)}, nil
}

// flowBinding returns the browser's flow binding value, reusing the one in a
// valid flow cookie so that two logins started in two tabs both complete.
func (m *Manager) flowBinding(c *gin.Context) string {
	if b, ok, err := m.cookies.stringValue(c.Request, m.flowCookieNm, cookieBinding); ok && err == nil && len(b) >= 22 {
		return b
	}
	return randomToken(16)
}

func (m *Manager) setFlowCookie(c *gin.Context, binding string) error {
	return m.cookies.setStrings(c.Writer, m.flowCookieNm, map[any]any{cookieBinding: binding}, m.flowCookie)
}

func (m *Manager) flowCookieMatches(c *gin.Context, want []byte) bool {
	b, ok, err := m.cookies.stringValue(c.Request, m.flowCookieNm, cookieBinding)
	if !ok || err != nil || b == "" || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// normalizeIdentifier checks a user-typed handle or DID against the AT
// Protocol syntax before any network call.
func normalizeIdentifier(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	s = strings.TrimPrefix(s, "@")
	invalid := func(msg string) error {
		return &OAuthFlowError{Code: FlowInvalidHandle, Message: msg}
	}
	switch {
	case s == "":
		return "", invalid("enter your handle, for example alice.bsky.social")
	case len(s) > 2048:
		return "", invalid("that handle is too long")
	}
	if strings.HasPrefix(s, "did:") {
		did, err := syntax.ParseDID(s)
		if err != nil {
			return "", invalid("that is not a valid DID")
		}
		return did.String(), nil
	}
	h, err := syntax.ParseHandle(s)
	if err != nil {
		return "", invalid("that is not a valid handle; a handle looks like alice.bsky.social")
	}
	return h.Normalize().String(), nil
}

// classifyFlowErr keeps *OAuthFlowError and *StorageError as they are and
// turns anything else into an *OAuthFlowError with a safe message.
func classifyFlowErr(err error, code, msg string) error {
	var fe *OAuthFlowError
	if errors.As(err, &fe) || isStorageErr(err) {
		return err
	}
	return &OAuthFlowError{Code: code, Message: msg, Err: err}
}
