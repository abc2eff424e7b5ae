package ginoauth

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Middleware loads the request's session (one cookie decode, one storage read)
// and puts the user in the Gin context for CurrentUser. It never blocks
// anonymous requests. The one exception is a storage failure while a session
// cookie is present: that request gets 503, because answering it as
// "logged out" would be wrong and would hide the outage.
//
// Responses to authenticated requests get Cache-Control: no-store, so no
// shared cache keeps one user's page for another.
func Middleware(m *Manager) gin.HandlerFunc {
	return func(c *gin.Context) {
		u, err := m.loadUser(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		if u != nil {
			c.Header("Cache-Control", "no-store")
		}
		c.Next()
	}
}

// RequireAuth answers 401 {"error": "login required", "code": reason} to
// requests without a logged-in user, where reason is a Session* code
// ("not_logged_in", "session_expired", "invalid_cookie", ...). Use it after
// Middleware, on the routes or groups that need a login.
func RequireAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, ok := CurrentUser(c); !ok {
			code := SessionNotLoggedIn
			if v, _ := c.Get(userContextKey); v != nil {
				if st, _ := v.(*sessionState); st != nil && st.reason != "" {
					code = st.reason
				}
			}
			c.Header("Cache-Control", "no-store")
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "login required", "code": code})
			return
		}
		c.Next()
	}
}

// httpStatuser is implemented by every error type of this package.
type httpStatuser interface{ HTTPStatus() int }

// ErrorResponse describes how a failed request is answered, for
// Config.ErrorHandler.
type ErrorResponse struct {
	Status  int    // HTTP status: 400, 401, 502, 503 or 500
	Code    string // machine-readable code, e.g. "invalid_handle", "storage_unavailable"
	Message string // a short sentence that is safe to show to the user
	Err     error  // the cause, for logs only; never show it
}

// replyFor maps err to a status and a safe message, and logs the cause.
// Internal detail never reaches the response.
func (m *Manager) replyFor(c *gin.Context, err error) ErrorResponse {
	r := ErrorResponse{Status: http.StatusInternalServerError, Code: "internal_error", Message: "something went wrong", Err: err}
	var (
		fe *OAuthFlowError
		se *SessionError
		me *MobileIntegrationError
		st *StorageError
	)
	switch {
	case errors.As(err, &st):
		r.Code, r.Message = "storage_unavailable", "the session store is unavailable; please try again shortly"
	case errors.As(err, &fe):
		r.Code, r.Message = fe.Code, fe.Message
	case errors.As(err, &me):
		r.Code, r.Message = me.Code, me.Message
	case errors.As(err, &se):
		r.Code, r.Message = se.Code, "login required"
	}
	var hs httpStatuser
	if errors.As(err, &hs) {
		r.Status = hs.HTTPStatus()
	}
	level := m.log.Warn
	if r.Status >= 500 {
		level = m.log.Error
	}
	level("request failed", "path", c.FullPath(), "status", r.Status, "code", r.Code, "err", err)
	c.Header("Cache-Control", "no-store")
	if r.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	return r
}

// abortWithError answers err through Config.ErrorHandler, or as JSON
// {"error": safe message, "code": code}.
func (m *Manager) abortWithError(c *gin.Context, err error) {
	r := m.replyFor(c, err)
	if m.cfg.ErrorHandler != nil {
		m.cfg.ErrorHandler(c, r)
		c.Abort()
		return
	}
	c.AbortWithStatusJSON(r.Status, gin.H{"error": r.Message, "code": r.Code})
}
