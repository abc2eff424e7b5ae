package ginoauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	gsessions "github.com/gorilla/sessions"
)

// Storage key patterns of the Manager (the OAuth client keeps its own; see
// the indigoclient package):
//
//	sess:{sha256(session id)}  one session record per login per device
//	flow:{state}               one login in progress (FlowTTL)
//	acct:{did}                 the account's index set (storage.Indexer)
//	seen:{sha256(session id)}  coarse last-seen time, for the device list
//	mcode:{sha256(code)}       a native app's one-time code (Mobile.CodeTTL)
//
// Session ids are stored hashed, so a leaked database holds no usable
// cookie values.
const (
	sessionKeyPrefix = "sess:"
	flowKeyPrefix    = "flow:"
)

// cookie value keys inside the sealed cookies.
const (
	cookieSessionID    = "sid"
	cookieActive       = "a" // last activity, Unix seconds, for IdleTimeout
	cookieBinding      = "b"
	cookieBindingSince = "t"
)

// revokeTimeout bounds a revocation, which may first wait for a token
// refresh in flight to finish.
const revokeTimeout = 45 * time.Second

const (
	sessionIDBytes = 32 // 256-bit session ids
	// sessionIDLen is the base64url length of a session id; anything else
	// in a cookie is rejected before touching storage.
	sessionIDLen = 43
)

// stateKey is the gin context key of the request's sessionState; a type of
// its own, so no other package can read or overwrite it.
type stateKey struct{}

// sessionState is what a request's session turned out to be: a user, or the
// reason (a Session* code) there is none.
type sessionState struct {
	user   *User
	reason string
}

func setState(c *gin.Context, u *User, reason string) {
	if u != nil {
		u.state = sessionState{user: u} // in the User: no allocation of its own
		c.Set(stateKey{}, &u.state)
		return
	}
	c.Set(stateKey{}, &sessionState{reason: reason})
}

// state returns the request's sessionState, or nil before it was loaded.
func state(c *gin.Context) *sessionState {
	v, _ := c.Get(stateKey{})
	st, _ := v.(*sessionState)
	return st
}

// User is the logged-in account of the current request's session.
type User struct {
	DID       string    // the account DID (the token's sub)
	Handle    string    // verified handle at login, "" if it could not be verified
	Scopes    []string  // scopes granted to this session
	CreatedAt time.Time // when this device logged in
	ExpiresAt time.Time // absolute end of this session

	sessionHash    string // sha256 of the session id: the record's key suffix
	oauthSessionID string
	requested      []string // the scopes the login asked for
	resolver       any      // the OAuth client, when it resolves permission sets
	kind           string   // kindWeb or kindMobile
	// A native app's rotated tokens: the record this one replaced, and the
	// sealed successor of a rotated-out one.
	previous, successor string
	state               sessionState // the request's state, when this is its user
}

// OAuthSessionID is the OAuth client's id for this login's OAuth session
// (with indigo, the session id of ResumeSession), for apps that use the
// client directly.
func (u *User) OAuthSessionID() string { return u.oauthSessionID }

// Kinds of device session.
const (
	kindWeb    = "web"    // a browser, by cookie
	kindMobile = "mobile" // a native app, by bearer token
)

// sessionRecord is what sess:{hash} holds.
type sessionRecord struct {
	Kind           string    `json:"kind,omitempty"` // kindWeb when empty
	DID            string    `json:"did"`
	Handle         string    `json:"handle,omitempty"`
	OAuthSessionID string    `json:"oauth_session_id"`
	Scopes         []string  `json:"scopes,omitempty"`
	Requested      []string  `json:"requested,omitempty"` // what the login asked for, for a step-up
	Device         string    `json:"device,omitempty"`    // from the User-Agent at login
	IP             string    `json:"ip,omitempty"`        // only with Config.RecordIP
	CreatedAt      time.Time `json:"created_at"`
	ExpiresAt      time.Time `json:"expires_at"`

	// A native app's token rotation: the rotated-out record stays valid
	// until GraceUntil and holds its successor (sealed), so that a retried
	// rotation gets the same new token; the successor names its predecessor
	// so that a logout ends both.
	GraceUntil time.Time `json:"grace_until,omitzero"`
	Successor  string    `json:"successor,omitempty"`
	Previous   string    `json:"previous,omitempty"`
}

func (rec *sessionRecord) kind() string {
	if rec.Kind == "" {
		return kindWeb
	}
	return rec.Kind
}

// newUser is the User a session record describes; hash is the record's key
// suffix.
// record is the part of a session record that ending it needs.
func (u *User) record() *sessionRecord {
	return &sessionRecord{Kind: u.kind, DID: u.DID, Handle: u.Handle, OAuthSessionID: u.oauthSessionID, Previous: u.previous, Successor: u.successor}
}

func (m *Manager) newUser(rec *sessionRecord, hash string) *User {
	return &User{
		DID: rec.DID, Handle: rec.Handle, Scopes: rec.Scopes, // rec is the caller's own, freshly decoded
		CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt,
		sessionHash: hash, oauthSessionID: rec.OAuthSessionID, requested: rec.Requested,
		resolver: m.client, kind: rec.kind(), previous: rec.Previous, successor: rec.Successor,
	}
}

// hashSessionID is the storage name of a session: the id itself is only
// ever in the cookie or token, so a leaked database cannot be replayed.
func hashSessionID(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	var b [43]byte // RawURLEncoding of 32 bytes, encoded on the stack
	base64.RawURLEncoding.Encode(b[:], sum[:])
	return string(b[:])
}

// CurrentUser returns the logged-in user of this request, as loaded by the
// Manager's Middleware or RequireAuth (or a prebuilt handler). ok is false
// for anonymous requests and before the session was loaded.
func CurrentUser(c *gin.Context) (user *User, ok bool) {
	if st := state(c); st != nil && st.user != nil {
		return st.user, true
	}
	return nil, false
}

// ValidateSession returns the request's user; or a *SessionError whose Code
// says why there is none (SessionNotLoggedIn, SessionExpired,
// SessionInvalidCookie, SessionOAuthGone); or a *StorageError when storage
// cannot answer. It loads the session if nothing did yet in this request.
func (m *Manager) ValidateSession(c *gin.Context) (*User, error) {
	if _, err := m.loadUser(c); err != nil {
		return nil, err
	}
	st := state(c)
	if st.user == nil {
		return nil, &SessionError{Code: st.reason}
	}
	return st.user, nil
}

// loadUser reads the session cookie and its record once per request and
// caches the outcome in the gin context. A nil user with a nil error means
// anonymous; the only error is a *StorageError.
func (m *Manager) loadUser(c *gin.Context) (*User, error) {
	if st := state(c); st != nil {
		return st.user, nil
	}
	began := time.Now()
	u, reason, err := m.readSession(c)
	switch {
	case err != nil:
		m.metrics.SessionChecked(CodeStorageUnavailable, time.Since(began))
		return nil, err
	case u != nil:
		m.metrics.SessionChecked("ok", time.Since(began))
		m.noteSeen(u)
	case reason == SessionNotLoggedIn:
		m.metrics.SessionChecked("anonymous", time.Since(began))
	default:
		m.metrics.SessionChecked(reason, time.Since(began))
	}
	setState(c, u, reason)
	return u, nil
}

// readSession returns the request's user, or the reason there is none. A
// native app's bearer token (Authorization: Bearer) is read when the
// request carries one; otherwise the session cookie. A token anywhere else
// (a query string, say) is never read.
func (m *Manager) readSession(c *gin.Context) (*User, string, error) {
	if token, ok := bearerToken(c.Request); ok {
		return m.readBearer(c, token)
	}
	sid, active, present, err := m.cookies.stringValues(c.Request, m.cfg.CookieName, cookieSessionID, cookieActive)
	if err != nil {
		m.log.Debug("session cookie rejected", "reason", err)
		m.clearSessionCookie(c)
		if errors.Is(err, ErrCookieExpired) {
			return nil, SessionExpired, nil
		}
		return nil, SessionInvalidCookie, nil
	}
	if !present {
		return nil, SessionNotLoggedIn, nil
	}
	if len(sid) != sessionIDLen {
		return nil, SessionInvalidCookie, nil
	}
	u, reason, err := m.sessionFor(c.Request.Context(), hashSessionID(sid), kindWeb)
	if err == nil && u != nil && m.cfg.IdleTimeout > 0 {
		u, reason, err = m.checkIdle(c, u, sid, active)
	}
	if err == nil && u == nil {
		m.clearSessionCookie(c)
	}
	return u, reason, err
}

// checkIdle enforces Config.IdleTimeout for a browser session. The time of
// its last activity is sealed in the session cookie (which no one can
// forge or move forward) and checked here, on the server; the cookie is
// resealed at most once per idleTouchEvery. So idle tracking needs no
// storage at all, and a session check stays one storage read. (Native app
// sessions are bounded by their absolute lifetime and token rotation.)
func (m *Manager) checkIdle(c *gin.Context, u *User, sid, active string) (*User, string, error) {
	now := m.now()
	last, perr := strconv.ParseInt(active, 10, 64)
	if perr != nil || now.Sub(time.Unix(last, 0)) >= m.cfg.IdleTimeout {
		return nil, SessionExpired, m.endDevice(c.Request.Context(), u.sessionHash, u.record(), EndIdle)
	}
	if now.Sub(time.Unix(last, 0)) > m.idleTouchEvery() {
		if err := m.setSessionCookie(c, sid, now, u.ExpiresAt); err != nil {
			return nil, "", err
		}
	}
	return u, "", nil
}

// setSessionCookie seals the session id and the time of last activity into
// the session cookie, expiring with the session.
func (m *Manager) setSessionCookie(c *gin.Context, sid string, active, expires time.Time) error {
	opts := m.sessionCookie
	opts.MaxAge = max(1, int(expires.Sub(m.now())/time.Second))
	values := map[any]any{cookieSessionID: sid, cookieActive: strconv.FormatInt(active.Unix(), 10)}
	return m.cookies.setStrings(c.Writer, m.cfg.CookieName, values, opts)
}

// sessionFor loads the session record under hash and checks its kind and
// lifetimes; a session past them is ended here. The caller clears a
// cookie that led nowhere.
func (m *Manager) sessionFor(ctx context.Context, hash, kind string) (*User, string, error) {
	var rec sessionRecord
	now := m.now()
	if !m.cache.get(hash, now, &rec) {
		switch err := m.getRecord(ctx, hash, &rec); {
		case errors.Is(err, ErrNotFound):
			return nil, SessionNotLoggedIn, nil // logged out elsewhere, or expired in storage
		case err != nil:
			return nil, "", err
		}
		m.cache.put(hash, &rec, now)
	}
	if rec.kind() != kind {
		return nil, map[string]string{kindWeb: SessionInvalidCookie, kindMobile: SessionInvalidToken}[kind], nil
	}
	if !rec.GraceUntil.IsZero() && !now.Before(rec.GraceUntil) {
		return nil, SessionNotLoggedIn, nil // a rotated-out token past its grace
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, SessionExpired, m.endDevice(ctx, hash, &rec, EndExpired)
	}
	return m.newUser(&rec, hash), "", nil
}

// idleTouchEvery is how stale the sealed last activity may get before the
// cookie is resealed: a tenth of the idle timeout, at most a minute.
func (m *Manager) idleTouchEvery() time.Duration {
	return min(m.cfg.IdleTimeout/10, time.Minute)
}

// endSession deletes an expired session's records and clears its cookie.

func (m *Manager) deleteSessionRecords(ctx context.Context, hash string) error {
	m.cache.drop(hash) // before: a request racing this delete must not re-cache it
	err := m.delete(ctx, sessionKeyPrefix+hash)
	m.cache.drop(hash)
	if err == nil {
		_ = m.delete(ctx, seenPrefix+hash) // only the device list reads it; it expires anyway
	}
	return err
}

// startSession creates a new session record for grant and sets its cookie.
// A session the request already had is ended like a logout (record deleted,
// tokens revoked): the id always changes at login, so a cookie planted
// before login is worthless after it.
func (m *Manager) startSession(c *gin.Context, grant *Grant, requested []string) (*User, error) {
	ctx := c.Request.Context()
	if old, err := m.loadUser(c); err == nil && old != nil {
		if err := m.endDevice(ctx, old.sessionHash, old.record(), EndReplaced); err != nil {
			return nil, err
		}
	}
	sid := randomToken(sessionIDBytes)
	hash := hashSessionID(sid)
	now := m.now()
	rec := sessionRecord{
		DID: grant.DID, Handle: grant.Handle, OAuthSessionID: grant.OAuthSessionID,
		Scopes: grant.Scopes, Requested: requested, CreatedAt: now, ExpiresAt: now.Add(m.cfg.SessionTTL),
		Device: describeDevice(c.Request.UserAgent()), IP: m.clientIP(c),
	}
	if err := m.putRecord(ctx, hash, &rec, m.cfg.SessionTTL); err != nil {
		return nil, err
	}
	if err := m.index(ctx, rec.DID, hash, m.cfg.SessionTTL); err != nil {
		_ = m.deleteSessionRecords(ctx, hash)
		return nil, err
	}

	if err := m.setSessionCookie(c, sid, now, rec.ExpiresAt); err != nil {
		return nil, err
	}
	u := m.newUser(&rec, hash)
	setState(c, u, "")
	m.log.Info("session started", "did", u.DID, "session", hash[:8])
	m.emit(EventLogin, "", &rec, hash)
	return u, nil
}

// Logout ends the request's session: it deletes the session record, revokes
// the OAuth tokens at the authorization server, and clears the cookie. With
// no session it only clears the cookie. Only a storage failure is returned:
// a failed revocation is logged, since the local session is gone either way.
func (m *Manager) Logout(c *gin.Context) error {
	u, err := m.loadUser(c)
	if err != nil {
		return err
	}
	if u != nil {
		if err := m.endDevice(c.Request.Context(), u.sessionHash, u.record(), EndLogout); err != nil {
			return err
		}
		m.log.Info("logged out", "did", u.DID, "session", u.sessionHash[:8])
	}
	m.clearSessionCookie(c)
	setState(c, nil, SessionNotLoggedIn)
	return nil
}

// revoke asks the OAuth client to revoke a login's tokens and forget its
// OAuth session, even if the browser goes away meanwhile. Failures are
// logged: the local session is gone either way. hash names the device
// session in logs ("" for a login that never got one).
func (m *Manager) revoke(ctx context.Context, did, oauthSessionID, hash string) {
	// The client may wait for a refresh in flight (under its lock) first.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if err := m.client.Revoke(ctx, did, oauthSessionID); err != nil {
		m.log.Warn("token revocation failed", "did", did, "session", shortRef(hash), "err", err)
	}
}

// shortRef is the part of a session hash that logs show.
func shortRef(hash string) string {
	if len(hash) < 8 {
		return "-"
	}
	return hash[:8]
}

// clearSessionCookie sends Max-Age=0 for the session cookie, but only if the
// request carried one: anonymous requests get no Set-Cookie header.
func (m *Manager) clearSessionCookie(c *gin.Context) {
	if _, err := c.Request.Cookie(m.cfg.CookieName); err != nil {
		return
	}
	m.expireCookie(c, m.cfg.CookieName)
}

// expireCookie deletes cookie name (same attributes as it was set with).
func (m *Manager) expireCookie(c *gin.Context, name string) {
	opts := m.sessionCookie
	opts.MaxAge = -1
	c.Header("Cache-Control", "no-store")
	http.SetCookie(c.Writer, gsessions.NewCookie(name, "", opts.ToGorillaOptions()))
}
