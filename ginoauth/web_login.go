package ginoauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file is the web login: StartOAuth sends the browser to the
// authorization server, HandleCallback brings it back logged in, and
// Logout ends the browser's session. The flow record (flow:{state}) keeps
// what the callback needs server side; the flow cookie binds the flow to
// the browser that started it.
const flowKeyPrefix = "flow:"

// maxStateLen bounds the state parameter accepted at the callback.
const maxStateLen = 512

// StartOptions tune one login.
type StartOptions struct {
	// ReturnTo is where to send the browser after login: a path on this
	// site. It is checked after parsing; anything that could leave the site
	// (//host, /\host, encoded variants) becomes "/".
	ReturnTo string
	// Server starts the login at an authorization server or PDS instead of
	// from a handle, for users who have none yet or sign up: a URL or host
	// such as "https://bsky.social" or "bsky.social" (https, no port, path,
	// query or user info). Used only when the identifier is empty.
	Server string
	// Scopes to request for this login, among those the client metadata
	// declares; nil means the client's configured scopes. Set them from
	// your code only, never from user input.
	Scopes []string
	// Prompt asks the authorization server for a behaviour: "" (its
	// choice), "login" (sign in again), "select_account", "consent" (show
	// the consent screen again) or "create" (sign up).
	Prompt string
	// AddAccount adds the login to the browser's accounts instead of
	// replacing them (an account switcher; the login route's add=1), up
	// to Config.MaxAccounts, and asks the authorization server to sign in
	// afresh (Prompt "login" unless set), so the user can pick another
	// account. The new account becomes active; one already in the browser
	// is replaced by the new login. Only the accounts the browser holds
	// now, and still holds, live, when the login completes are kept.
	AddAccount bool
}

// Prompt values StartOptions.Prompt accepts.
var prompts = []string{"", "login", "select_account", "consent", "create"}

// flowRecord is what flow:{state} holds: everything the callback needs that
// must not travel inside state.
type flowRecord struct {
	ReturnTo string `json:"return_to"`
	// BindingHash is sha256 of the flow cookie's binding value: the callback
	// is accepted only from the browser holding that cookie (login CSRF).
	BindingHash []byte    `json:"binding_hash"`
	CreatedAt   time.Time `json:"created_at"`
	// Scopes are the scopes the login asked for.
	Scopes []string `json:"scopes,omitempty"`
	// StepUpDID is set for a step-up: the account that must approve.
	StepUpDID string `json:"step_up_did,omitempty"`
	// Mobile is set for a native app's login (which has no browser
	// binding: the app's PKCE and state do that job).
	Mobile *mobileFlow `json:"mobile,omitempty"`
	// Keep, for an added account or a step-up, are the hashes of the
	// browser's sessions at the start that the login keeps (accounts.go);
	// every other session the cookie names at the callback is ended.
	Keep []string `json:"keep,omitempty"`
}

// CallbackResult is what HandleCallback returns on success.
type CallbackResult struct {
	User     *User  // the new session's user; nil for a native app's login
	ReturnTo string // the validated return path, "/" by default
	// AppRedirect, for a native app's login, is where to send the browser
	// instead: the app's redirect URI with its one-time code and state.
	AppRedirect string
}

// StartOAuth begins a login for identifier (a handle such as alice.bsky.social,
// with or without "@", or a DID), or, when identifier is empty, at
// opts.Server. It checks its input before any network call, asks the OAuth
// client for an authorization with the login's options (the identifier is
// passed on as login_hint as the user typed it), keeps the flow record
// server side under its state, binds the flow to this browser with a
// short-lived flow cookie, and returns the URL to redirect the browser to.
//
// Errors: *OAuthFlowError (bad input: 400; unreachable server: 502) or
// *storage.Error (503).
func (m *Manager) StartOAuth(c *gin.Context, identifier string, opts StartOptions) (string, error) {
	return m.startFlowWith(c, identifier, opts, flowExtra{})
}

// flowExtra is what a step-up or a native app's login adds to a flow.
type flowExtra struct {
	stepUpDID string
	mobile    *mobileFlow
}

// startFlowWith is StartOAuth with the extras of the other kinds of login.
func (m *Manager) startFlowWith(c *gin.Context, identifier string, opts StartOptions, extra flowExtra) (string, error) {
	if err := m.limits.allow(c, limitLoginStart); err != nil {
		return "", err
	}
	req := oauthclient.AuthorizeRequest{Scopes: opts.Scopes, Prompt: opts.Prompt, TTL: m.cfg.FlowTTL}
	if !slices.Contains(prompts, opts.Prompt) {
		return "", &OAuthFlowError{Code: CodeInvalidRequest, Message: "that sign-in option is not supported"}
	}
	if strings.TrimSpace(identifier) == "" && opts.Server != "" {
		server, err := normalizeServer(opts.Server)
		if err != nil {
			return "", err
		}
		req.Server = server
	} else {
		ident, err := normalizeIdentifier(identifier)
		if err != nil {
			return "", err
		}
		req.Identifier, req.LoginHint = ident, strings.TrimSpace(identifier)
	}
	if err := m.checkLoginNames(req.Identifier, req.Server); err != nil {
		return "", err
	}
	if m.cfg.AuthenticationOnly {
		req.Scopes = []string{"atproto"}
	}
	ctx := c.Request.Context()
	var keep []string
	if extra.mobile == nil && (opts.AddAccount || extra.stepUpDID != "") {
		var err error
		if keep, err = m.accountsToKeep(c, opts.AddAccount && extra.stepUpDID == ""); err != nil {
			return "", err
		}
		if opts.AddAccount && req.Prompt == "" {
			req.Prompt = "login"
		}
	}
	var binding string
	var since time.Time
	if extra.mobile == nil {
		binding, since = m.flowBinding(c)
	}

	auth, err := m.client.Authorize(ctx, req)
	if err != nil {
		return "", flowErrorFor(err, CodeServerUnavailable)
	}
	if auth == nil || auth.URL == "" || auth.State == "" || len(auth.State) > maxStateLen {
		return "", &OAuthFlowError{Code: CodeServerUnavailable, Message: "the OAuth client returned an unusable authorization", Err: errors.New("empty URL or state")}
	}
	rec := flowRecord{
		ReturnTo: safeReturnPath(opts.ReturnTo), CreatedAt: m.now(),
		Scopes: auth.Scopes, StepUpDID: extra.stepUpDID, Mobile: extra.mobile, Keep: keep,
	}
	if extra.mobile == nil {
		bh := sha256.Sum256([]byte(binding))
		rec.BindingHash = bh[:]
	}
	if err := m.setJSON(ctx, flowKeyPrefix+auth.State, rec, m.cfg.FlowTTL); err != nil {
		return "", err
	}
	if extra.mobile == nil {
		if err := m.setFlowCookie(c, binding, since); err != nil {
			return "", err
		}
	}
	m.log.Info("login started", "identifier", req.Identifier, "server", req.Server, "prompt", req.Prompt, "step_up", extra.stepUpDID != "", "mobile", extra.mobile != nil)
	kind := "web"
	switch {
	case extra.mobile != nil:
		kind = "mobile"
	case extra.stepUpDID != "":
		kind = "step_up"
	}
	m.metrics.LoginStarted(kind)
	return auth.URL, nil
}

// HandleCallback completes a login at the redirect URI. In order: the flow
// cookie must hold the binding of the flow record for state (so a callback
// URL that leaked to someone else cannot use up the real browser's login),
// the record is consumed atomically (a replayed callback finds nothing), the
// OAuth client checks error and iss and exchanges the code, and a new
// session (new id) is stored, its cookie set and the flow cookie cleared.
// The caller redirects to result.ReturnTo.
//
// Errors: *OAuthFlowError (400, or 502) or *storage.Error (503).
func (m *Manager) HandleCallback(c *gin.Context) (*CallbackResult, error) {
	began := time.Now()
	res, err := m.handleCallback(c)
	code := "ok"
	if err != nil {
		code = string(ErrorResponseFor(err).Code)
	}
	m.metrics.LoginFinished(code, time.Since(began))
	return res, err
}

func (m *Manager) handleCallback(c *gin.Context) (*CallbackResult, error) {
	if err := m.limits.allow(c, limitCallback); err != nil {
		return nil, err
	}
	ctx := c.Request.Context()
	params := c.Request.URL.Query()
	state := params.Get("state")
	if state == "" || len(state) > maxStateLen || len(params["state"]) != 1 {
		return nil, &OAuthFlowError{Code: CodeInvalidRequest, Message: "the login response is missing its state; please start again"}
	}
	unknown := &OAuthFlowError{Code: CodeUnknownState, Message: flowMessages[CodeUnknownState]}
	var peek flowRecord
	switch err := m.getJSON(ctx, flowKeyPrefix+state, &peek); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, unknown
	case err != nil:
		return nil, err
	}
	if peek.Mobile == nil && !m.flowCookieMatches(c, peek.BindingHash) {
		return nil, &OAuthFlowError{Code: CodeBrowserMismatch, Message: "this login was started in a different browser; please start again here"}
	}
	var rec flowRecord
	switch err := m.takeJSON(ctx, flowKeyPrefix+state, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		return nil, unknown // consumed by a concurrent callback
	case err != nil:
		return nil, err
	}
	if subtle.ConstantTimeCompare(rec.BindingHash, peek.BindingHash) != 1 {
		return nil, unknown
	}
	var (
		grant *oauthclient.Grant
		err   error
	)
	if m.cfg.AuthenticationOnly {
		grant, err = m.authenticate(ctx, params, m.grantMaxAge())
	} else {
		grant, err = m.client.Callback(ctx, params, m.grantMaxAge())
	}
	if err != nil {
		err = flowErrorFor(err, CodeExchangeFailed)
		if rec.Mobile != nil {
			// The app is told, at the redirect URI it registered.
			var fe *OAuthFlowError
			if errors.As(err, &fe) {
				return &CallbackResult{AppRedirect: appRedirect(rec.Mobile.RedirectURI, url.Values{"error": {string(fe.Code)}, "state": {rec.Mobile.AppState}})}, nil
			}
		}
		return nil, err
	}
	if grant == nil || grant.DID == "" || (grant.OAuthSessionID == "" && !m.cfg.AuthenticationOnly) {
		return nil, &OAuthFlowError{Code: CodeExchangeFailed, Message: flowMessages[CodeExchangeFailed], Err: errors.New("OAuth client returned an empty grant")}
	}
	if rec.StepUpDID != "" && grant.DID != rec.StepUpDID {
		m.revoke(ctx, grant.DID, grant.OAuthSessionID, "")
		return nil, &OAuthFlowError{Code: CodeAccountMismatch, Message: "the permissions were approved with a different account; please try again with the account you are logged in with"}
	}
	if rec.Mobile != nil {
		to, err := m.finishMobile(c, &rec, grant)
		if err != nil {
			m.revoke(ctx, grant.DID, grant.OAuthSessionID, "")
			return nil, err
		}
		return &CallbackResult{AppRedirect: to}, nil
	}
	user, err := m.startSession(c, grant, rec.Scopes, rec.Keep)
	if err != nil {
		// Do not leave live tokens behind for a session nobody can use.
		if grant.OAuthSessionID != "" {
			m.revoke(ctx, grant.DID, grant.OAuthSessionID, "")
		}
		return nil, err
	}
	m.expireCookie(c.Writer, m.flowCookieNm, m.flowCookie)
	return &CallbackResult{User: user, ReturnTo: safeReturnPath(rec.ReturnTo)}, nil
}

// authenticate completes an authentication-only login: who the user is,
// is all this app needs, so no tokens are kept. With the client's
// oauthclient.Authenticator capability none is ever written to storage;
// without it the client stores them in Callback and they are revoked and
// deleted at once.
func (m *Manager) authenticate(ctx context.Context, params url.Values, ttl time.Duration) (*oauthclient.Grant, error) {
	var (
		grant *oauthclient.Grant
		err   error
	)
	if a, ok := m.client.(oauthclient.Authenticator); ok {
		grant, err = a.Authenticate(ctx, params)
	} else {
		grant, err = m.client.Callback(ctx, params, ttl)
	}
	if err != nil || grant == nil || grant.OAuthSessionID == "" {
		return grant, err
	}
	m.revoke(ctx, grant.DID, grant.OAuthSessionID, "")
	grant.OAuthSessionID = ""
	return grant, nil
}

// flowBinding returns the browser's flow binding value and when it was
// made, reusing the one in a valid flow cookie so that two logins started
// in two tabs both complete. A binding is never kept past FlowTTL from its
// making: a new /login does not extend it.
func (m *Manager) flowBinding(c *gin.Context) (binding string, since time.Time) {
	now := m.now()
	b, ok, err := m.cookies.stringValue(c.Request, m.flowCookieNm, cookieBinding)
	t, _, _ := m.cookies.stringValue(c.Request, m.flowCookieNm, cookieBindingSince)
	if ok && err == nil && len(b) >= 22 {
		if unix, perr := strconv.ParseInt(t, 10, 64); perr == nil {
			if made := time.Unix(unix, 0); now.Sub(made) < m.cfg.FlowTTL-time.Minute && !made.After(now) {
				return b, made
			}
		}
	}
	return randomToken(16), now
}

// setFlowCookie sets the flow cookie to expire FlowTTL after the binding
// was made.
func (m *Manager) setFlowCookie(c *gin.Context, binding string, since time.Time) error {
	opts := m.flowCookie
	opts.MaxAge = max(60, int((m.cfg.FlowTTL-m.now().Sub(since))/time.Second))
	values := map[any]any{cookieBinding: binding, cookieBindingSince: strconv.FormatInt(since.Unix(), 10)}
	return m.cookies.setStrings(c.Writer, m.flowCookieNm, values, opts, 0)
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
		return &OAuthFlowError{Code: CodeInvalidHandle, Message: msg}
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
		return "", invalid(flowMessages[CodeInvalidHandle])
	}
	return h.Normalize().String(), nil
}

// normalizeServer checks a server a login starts from and returns its https
// origin. A bare host gets https://.
func normalizeServer(raw string) (string, error) {
	bad := &OAuthFlowError{Code: CodeInvalidRequest, Message: "that is not a server address; use one such as https://bsky.social"}
	s := strings.TrimSpace(raw)
	if len(s) > 256 {
		return "", bad
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") || u.Port() != "" || u.Opaque != "" {
		return "", bad
	}
	host := strings.ToLower(u.Hostname())
	if _, err := syntax.ParseHandle(host); err != nil { // a DNS name with a TLD: no IP address, no single label
		return "", bad
	}
	return "https://" + host, nil
}

// grantMaxAge is the most a login's OAuth session may be kept, as the
// OAuth client is asked at the callback: the app's cap, else what the
// grant allows (when the client can tell; the fallback cap otherwise).
func (m *Manager) grantMaxAge() time.Duration {
	switch {
	case m.cfg.MaxSessionAge > 0:
		return m.cfg.MaxSessionAge
	case m.sessions.limiter != nil:
		return 10 * 365 * 24 * time.Hour // the client's limits decide
	}
	return fallbackMaxAge
}

// grantStarted keeps a new login's grant for background access and
// schedules its keep-alive, as configured.
func (m *Manager) grantStarted(ctx context.Context, grant *oauthclient.Grant) {
	m.keepForBackground(ctx, grant)
	m.scheduleKeepAlive(ctx, grant.DID, grant.OAuthSessionID, grant.RefreshBy, grant.EndsAt)
}

// startSession creates a browser's device session for grant and sets its
// cookie. The sessions the request's cookie already names are ended like
// a logout (records deleted, tokens revoked), but for those in keep (an
// added account's or a step-up's, see accountsToKeep) that are still live
// and of another account: those stay, behind the new one. The cookie is
// sealed afresh and the new session's id is new, so a cookie planted
// before login is worthless after it.
func (m *Manager) startSession(c *gin.Context, grant *oauthclient.Grant, requested []string, keep []string) (*User, error) {
	ctx := c.Request.Context()
	kept, browser, err := m.replaceAccounts(c, grant.DID, keep)
	if err != nil {
		return nil, err
	}
	if len(kept) == 0 {
		browser = randomToken(16) // a browser's first account: it is named afresh
	}
	now := m.now()
	rec := sessionRecord{
		DID: grant.DID, Handle: grant.Handle, OAuthSessionID: grant.OAuthSessionID,
		Scopes: grant.Scopes, Requested: requested, CreatedAt: now,
		GrantRefreshBy: grant.RefreshBy, GrantEndsAt: grant.EndsAt,
		Device: describeDevice(c.Request.UserAgent()), IP: m.clientIP(c), Browser: browser,
	}
	sid, hash, err := m.sessions.start(ctx, &rec)
	if err != nil {
		return nil, err
	}
	m.grantStarted(ctx, grant)
	u := m.sessions.user(&rec, hash)
	u.sid, u.others = sid, joinEntries(kept)
	for _, e := range kept {
		u.othersUntil = max(u.othersUntil, e.until)
	}
	if err := m.setSessionCookie(c.Writer, sid, now, cookieUntilFor(u), u.others); err != nil {
		return nil, err
	}
	setState(c, u, "")
	return u, nil
}

// accountsToKeep is, at the start of an added account's login (add) or a
// step-up, the hashes of the browser's live sessions: the login keeps
// these, and only these. An added account beyond Config.MaxAccounts is
// refused here, before the user goes to the authorization server.
func (m *Manager) accountsToKeep(c *gin.Context, add bool) ([]string, error) {
	u, err := m.loadUser(c)
	if err != nil || u == nil || u.kind != kindWeb {
		return nil, err
	}
	keep := []string{u.sessionHash}
	if u.others != "" {
		live, _, err := m.readOthers(c.Request.Context(), u)
		if err != nil {
			return nil, err
		}
		for _, o := range live {
			keep = append(keep, o.hash)
		}
	}
	if add && len(keep) >= m.cfg.MaxAccounts {
		return nil, &OAuthFlowError{Code: CodeInvalidRequest, Message: "this browser is logged in with as many accounts as it may be; sign out of one first"}
	}
	return keep, nil
}

// replaceAccounts ends the sessions the request's cookie names (at most
// MaxAccounts reads and ends), but for those in keep that are still live
// browser sessions of accounts other than did, of one browser: it returns
// those, as the new cookie's entries, in the cookie's order, and the
// browser they share.
func (m *Manager) replaceAccounts(c *gin.Context, did string, keep []string) (kept []browserEntry, browser string, err error) {
	ctx := c.Request.Context()
	now := m.now()
	dids := []string{did}
	entries := m.requestAccounts(c.Request)
	// The sessions held at the start that the cookie no longer names (a
	// cookie put in its place meanwhile) are this browser's, and would be
	// left behind: they end too.
	for _, hash := range keep {
		if !slices.ContainsFunc(entries, func(e browserEntry) bool { return hashSessionID(e.sid) == hash }) {
			entries = append(entries, browserEntry{sid: "", activity: -1, until: 0, hash: hash})
		}
	}
	for _, e := range entries {
		hash := e.hash
		if hash == "" {
			hash = hashSessionID(e.sid)
		}
		var rec sessionRecord
		switch err := m.sessions.get(ctx, hash, &rec); {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return nil, "", err
		}
		if rec.kind() != kindWeb {
			continue // not this browser's to end
		}
		idle := m.cfg.IdleTimeout > 0 && now.Sub(time.Unix(e.activity, 0)) >= m.cfg.IdleTimeout
		if e.sid != "" && slices.Contains(keep, hash) && rec.live(now) && !idle && !slices.Contains(dids, rec.DID) && len(kept) < m.cfg.MaxAccounts-1 &&
			(len(kept) == 0 || rec.Browser == browser) {
			browser = rec.Browser
			e.until = m.sessions.cookieUntil(&rec).Unix()
			kept = append(kept, e)
			dids = append(dids, rec.DID)
			continue
		}
		if err := m.sessions.end(ctx, hash, &rec, EndReplaced); err != nil {
			return nil, "", err
		}
	}
	return kept, browser, nil
}

// Logout ends the request's session, a browser's or a native app's, and
// for a browser every other account it is logged in with (see
// StartOptions.AddAccount; LogoutAccount's route ends only the active
// one): it deletes the session records, revokes the OAuth tokens at the
// authorization server, and clears the cookie. With no session it only
// clears the cookie. Only a storage failure is returned: a failed
// revocation is logged, since the local session is gone either way.
func (m *Manager) Logout(c *gin.Context) error {
	u, err := m.loadUser(c)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	skip := ""
	if u != nil {
		if err := m.sessions.end(ctx, u.sessionHash, u.record(), EndLogout); err != nil {
			return err
		}
		m.log.Info("logged out", "did", u.DID, "session", shortRef(u.sessionHash))
		skip = u.sid
	}
	if u == nil || u.kind == kindWeb {
		if err := m.endBrowserAccounts(ctx, m.requestAccounts(c.Request), skip, EndLogout); err != nil {
			return err
		}
	}
	m.clearSessionCookie(c.Writer, c.Request)
	setState(c, nil, CodeNotLoggedIn)
	return nil
}
