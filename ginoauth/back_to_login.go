package ginoauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Back to login (Config.ReturnToLogin). A session that ends for a reason a
// new login fixes (the server revoked or refused its grant, the grant
// expired) leaves a small note, ended:{hash} (the session id's hash, so
// only the holder of the cookie or token finds it), saying why and for
// which account. A request that presents the ended session reads it (one
// storage read, only on the path where the session record is missing:
// the cookie is cleared in that answer, so once per browser), and
// RequireAuth answers with the reason and a login URL carrying the DID as
// login_hint and the request's path as the return path: 401 for JSON
// clients, a 303 to that URL for a browser's page when ReturnToLogin is
// on. The note holds the reason and the DID (public), never a token, and
// lapses after endedNoteTTL.

const (
	endedPrefix = "ended:"
	// endedNoteTTL is how long the note is kept: long enough for a user
	// who comes back the next week; about 100 bytes per session ended by
	// the server, which is rare.
	endedNoteTTL = 7 * 24 * time.Hour
)

// endedNote is what ended:{hash} holds.
type endedNote struct {
	Reason EndReason `json:"r"`
	DID    string    `json:"d"`
}

// loginFixes reports whether a new login fixes what ended a session with
// reason: the grant ended at or by the authorization server, or the
// account moved to another one (a new login goes there).
func loginFixes(reason EndReason) bool {
	switch reason {
	case EndRefreshRefused, EndRevoked, EndRevokedAtServer, EndGrantExpired, EndKeyRetired, EndAccountMoved:
		return true
	}
	return false
}

// noteEnded leaves the note of a session that ended with reason, when a
// new login fixes it. A failure only loses the note: the user then gets a
// plain "not logged in".
func (ds *deviceSessions) noteEnded(ctx context.Context, hash string, rec *sessionRecord, reason EndReason) {
	if !loginFixes(reason) {
		return
	}
	raw, _ := json.Marshal(endedNote{Reason: reason, DID: rec.DID})
	ctx, cancel := ds.op(ctx)
	defer cancel()
	_ = storageFailed(ds.metrics, "set", ds.store.Set(ctx, endedPrefix+hash, raw, endedNoteTTL))
}

// endedNoteOf reads the note of the ended session of id sid, if any.
func (ds *deviceSessions) endedNoteOf(ctx context.Context, sid string) *endedNote {
	ctx, cancel := ds.op(ctx)
	defer cancel()
	raw, err := ds.store.Get(ctx, endedPrefix+hashSessionID(sid))
	var n endedNote
	if err != nil || json.Unmarshal(raw, &n) != nil || n.DID == "" || !loginFixes(n.Reason) {
		return nil
	}
	return &n
}

// codeOfEnd is the session error code of a session that ended with reason.
func codeOfEnd(reason EndReason) ErrorCode {
	if reason == EndGrantExpired {
		return CodeGrantExpired
	}
	return CodeOAuthSessionGone
}

// endedKey is the gin context key of the request's endedNote.
type endedKey struct{}

// noteEndedSession looks for the note of an ended session when the
// request's session was not found, and keeps it in the request's context;
// it returns the code to answer with.
func (m *Manager) noteEndedSession(c *gin.Context, sid string, reason ErrorCode) ErrorCode {
	if reason != CodeNotLoggedIn {
		return reason
	}
	n := m.sessions.endedNoteOf(c.Request.Context(), sid)
	if n == nil {
		return reason
	}
	c.Set(endedKey{}, n)
	return codeOfEnd(n.Reason)
}

// sessionError is the *SessionError of a request without a usable
// session: with the reason and a login URL when its session ended for a
// reason a new login fixes.
func (m *Manager) sessionError(c *gin.Context, code ErrorCode) *SessionError {
	se := &SessionError{Code: code}
	if v, ok := c.Get(endedKey{}); ok {
		if n, ok := v.(*endedNote); ok {
			se.Reason, se.LoginURL = n.Reason, m.loginAgainURL(n.DID, c.Request)
		}
	}
	return se
}

// loginAgainURL is the login route with did as the login hint and r's
// page as the return path (its referring page for anything but a GET).
func (m *Manager) loginAgainURL(did string, r *http.Request) string {
	back := "/"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		back = safeReturnPath(r.URL.RequestURI())
	}
	return m.loginURLFor(did, back)
}

// loginURLFor is the login route for did, coming back to back.
func (m *Manager) loginURLFor(did, back string) string {
	q := url.Values{"handle": {did}, "redirect": {back}}
	return m.cfg.Routes.Login + "?" + q.Encode()
}

// endedAnswer adds to body, the session route's 401, why the session
// ended and where to log in again (coming back to the app's root), when
// it ended for a reason a new login fixes. u is the request's user when
// the session ended during this request.
func (m *Manager) endedAnswer(c *gin.Context, u *User, err error, body gin.H) {
	var se *SessionError
	switch v, ok := c.Get(endedKey{}); {
	case ok:
		if n, ok := v.(*endedNote); ok {
			body["reason"], body["login"] = n.Reason, m.loginURLFor(n.DID, "/")
		}
	case u != nil && errors.As(err, &se) && se.Reason != "" && loginFixes(se.Reason):
		body["reason"], body["login"] = se.Reason, m.loginURLFor(u.DID, "/")
	}
}

// backToLogin sends a browser's page request to se's login URL, when
// ReturnToLogin is on and there is one, and reports whether it did.
func (m *Manager) backToLogin(c *gin.Context, se *SessionError) bool {
	r := c.Request
	if !m.cfg.ReturnToLogin || se.LoginURL == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) ||
		!strings.Contains(r.Header.Get("Accept"), "text/html") {
		return false
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, se.LoginURL)
	c.Abort()
	return true
}
