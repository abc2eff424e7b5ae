package ginoauth

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Middleware loads the request's session and puts the user in the Gin
// context for CurrentUser:
//
//	r.Use(ginoauth.Middleware(mgr))
//
// A browser's session costs one cookie decode and one storage read (none
// with Config.SessionCacheTTL); a native app's bearer token is recognised
// first and read the same way. Middleware never blocks anonymous requests.
// The exceptions are a storage failure while a session is presented:
// that request gets 503, because answering it as "logged out" would be
// wrong and would hide the outage; and a request with two Authorization
// headers, which gets 400.
//
// Responses to authenticated requests get Cache-Control: no-store, so no
// shared cache keeps one user's page for another.
func Middleware(mgr *Manager) gin.HandlerFunc { return mgr.sessionCheck(false) }

// RequireAuth lets only requests with a logged-in user through:
//
//	r.GET("/me", ginoauth.RequireAuth(mgr), handler)
//
// It loads the session itself when Middleware did not run before it, and
// answers the others with 401 through Config.ErrorHandler (default JSON
// {"error": "login required", "code": code}, where code says why, such as
// "not_logged_in" or "session_expired"), or 503 when storage cannot answer.
func RequireAuth(mgr *Manager) gin.HandlerFunc { return mgr.sessionCheck(true) }

// sessionCheck loads the request's session and lets the request on, unless
// storage fails or, when required, nobody is logged in.
func (m *Manager) sessionCheck(required bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		u, err := m.loadUser(c)
		if err == nil && u == nil && required {
			se := m.sessionError(c, state(c).reason)
			if m.backToLogin(c, se) {
				return
			}
			err = se
		}
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		if u != nil {
			c.Writer.Header()["Cache-Control"] = noStore
		}
		c.Next()
	}
}

// noStore is the Cache-Control value of authenticated answers, shared
// rather than allocated per request (its capacity is its length, so an
// append elsewhere copies it).
var noStore = []string{"no-store"}[:1:1]

// CurrentUser returns the logged-in user of this request, as loaded by
// Middleware or RequireAuth (or a prebuilt handler). ok is false for
// anonymous requests and before the session was loaded.
func CurrentUser(c *gin.Context) (user *User, ok bool) {
	if st := state(c); st != nil && st.user != nil {
		return st.user, true
	}
	return nil, false
}

// ValidateSession returns the request's user; or a *SessionError whose Code
// says why there is none (CodeNotLoggedIn, CodeSessionExpired,
// CodeInvalidCookie, CodeInvalidToken, CodeOAuthSessionGone); or a
// *storage.Error when storage cannot answer; or, for a request with two
// Authorization headers, an error ErrorResponseFor answers 400. It loads
// the session if nothing did yet in this request.
func (m *Manager) ValidateSession(c *gin.Context) (*User, error) {
	u, err := m.loadUser(c)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, m.sessionError(c, state(c).reason)
	}
	return u, nil
}

// stateKey is the gin context key of the request's sessionState; a type of
// its own, so no other package can read or overwrite it.
type stateKey struct{}

// sessionState is what a request's session turned out to be: a user, or the
// code saying why there is none.
type sessionState struct {
	user   *User
	reason ErrorCode
}

func setState(c *gin.Context, u *User, reason ErrorCode) {
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

// loadUser reads the request's session once per request and caches the
// outcome in the gin context. A bearer token (a native app) is recognised
// before any other work and read by its own code; everything else is the
// session cookie. A token anywhere but the Authorization header (a query
// string, say) is never read. A nil user with a nil error means anonymous.
// The errors are a *storage.Error (503), or a 400 for a request with two
// Authorization headers: credentials that could be read two ways are
// refused, not guessed at.
func (m *Manager) loadUser(c *gin.Context) (*User, error) {
	if st := state(c); st != nil {
		return st.user, nil
	}
	if len(c.Request.Header.Values("Authorization")) > 1 {
		return nil, errTwoAuthorizations
	}
	var began time.Time
	if m.cfg.Metrics != nil {
		began = time.Now()
	}
	var (
		u      *User
		reason ErrorCode
		err    error
	)
	if token, ok := bearerToken(c.Request); ok {
		u, reason, err = m.readBearer(c, token)
	} else {
		u, reason, err = m.readCookie(c)
	}
	if m.cfg.Metrics != nil {
		outcome := "ok"
		switch {
		case err != nil:
			outcome = string(CodeStorageUnavailable)
		case u == nil && reason == CodeNotLoggedIn:
			outcome = "anonymous"
		case u == nil:
			outcome = string(reason)
		}
		m.cfg.Metrics.SessionChecked(outcome, time.Since(began))
	}
	if err != nil {
		return nil, err
	}
	setState(c, u, reason)
	return u, nil
}

var errTwoAuthorizations = badRequest("send one Authorization header, not several")

// bearerToken returns the token of an Authorization: Bearer header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// readCookie returns the user of the request's session cookie, or the code
// saying why there is none; a cookie that led nowhere is cleared.
func (m *Manager) readCookie(c *gin.Context) (*User, ErrorCode, error) {
	sid, active, others, sealedUntil, present, err := m.cookies.stringValues(c.Request, m.cfg.CookieName, cookieSessionID, cookieActive, cookieOthers)
	var othersUntil int64
	switch {
	case errors.Is(err, errCookieAmbiguous):
		// Two valid session cookies: one was planted (see CookieDomain).
		// Use neither, and clear neither: clearing would end the real one
		// and leave the planted one, whose Path or Domain may differ.
		m.log.Warn("two valid session cookies of different sessions; using neither")
		return nil, CodeInvalidCookie, nil
	case err != nil:
		m.log.Debug("session cookie rejected", "reason", err)
		m.clearSessionCookie(c.Writer, c.Request)
		if errors.Is(err, errCookieExpired) {
			return nil, CodeSessionExpired, nil
		}
		return nil, CodeInvalidCookie, nil
	case !present:
		return nil, CodeNotLoggedIn, nil
	case len(sid) != sessionIDLen:
		return nil, CodeInvalidCookie, nil
	case others != "":
		// Several accounts (accounts.go): more than the limit, or a
		// session named twice, is refused before any storage read.
		var ok bool
		if othersUntil, ok = checkOthers(others, sid, m.cfg.MaxAccounts); !ok {
			m.log.Warn("session cookie names too many accounts, or one twice; refusing it")
			m.clearSessionCookie(c.Writer, c.Request)
			return nil, CodeInvalidCookie, nil
		}
	}
	u, reason, err := m.sessions.read(c.Request.Context(), sid, kindWeb)
	if err == nil && u == nil {
		reason = m.noteEndedSession(c, sid, reason)
	}
	if err == nil && u != nil {
		u.sid, u.others, u.othersUntil = sid, others, othersUntil
		// Extended (here, or since the cookie was sealed): the cookie's
		// Max-Age and sealed expiry follow.
		u.extended = u.extended || cookieBehind(sealedUntil, u.cookieUntil, m.sessions.lifetime[kindWeb]) && m.resealDue(u)
		if m.cfg.IdleTimeout > 0 {
			u, reason, err = m.checkIdle(c, u, sid, active)
		} else if u.extended {
			err = m.setSessionCookie(c.Writer, sid, m.now(), cookieUntilFor(u), others)
		}
	}
	if err == nil && u == nil {
		if others != "" {
			// Only the active account is gone: the next one takes its
			// place from the next request on (this one stays anonymous,
			// so nothing meant for one account is done as another).
			err = m.dropActive(c)
		} else {
			m.clearSessionCookie(c.Writer, c.Request)
		}
	}
	return u, reason, err
}

// checkIdle enforces Config.IdleTimeout for a browser session. The time of
// its last activity is sealed in the session cookie (which no one can
// forge or move forward) and checked here, on the server; the cookie is
// resealed at most once per idleTouchEvery. So idle tracking needs no
// storage at all, and a session check stays one storage read. (Native app
// sessions are bounded by their absolute lifetime and token rotation.)
func (m *Manager) checkIdle(c *gin.Context, u *User, sid, active string) (*User, ErrorCode, error) {
	now := m.now()
	last, perr := strconv.ParseInt(active, 10, 64)
	if perr != nil || now.Sub(time.Unix(last, 0)) >= m.cfg.IdleTimeout {
		return nil, CodeSessionExpired, m.sessions.end(c.Request.Context(), u.sessionHash, u.record(), EndIdle)
	}
	if u.extended || now.Sub(time.Unix(last, 0)) > m.idleTouchEvery() && m.resealDue(u) {
		if err := m.setSessionCookie(c.Writer, sid, now, cookieUntilFor(u), u.others); err != nil {
			return nil, "", err
		}
	}
	return u, "", nil
}

// resealDue reports whether this instance should reseal u's cookie now: at
// most once per reseal period per session, so a client that keeps sending
// an older cookie (one that ignores Set-Cookie) does not cost a seal per
// request.
func (m *Manager) resealDue(u *User) bool {
	every := extendEvery(m.sessions.lifetime[kindWeb])
	if m.cfg.IdleTimeout > 0 {
		every = min(every, m.idleTouchEvery())
	}
	return m.sessions.resealedHere.dueWithin(u.sessionHash, m.now(), every)
}

// idleTouchEvery is how stale the sealed last activity may get before the
// cookie is resealed: a tenth of the idle timeout, at most a minute.
func (m *Manager) idleTouchEvery() time.Duration {
	return min(m.cfg.IdleTimeout/10, time.Minute)
}
