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

// RequireAuth answers 401 {"error": ..., "code": "not_logged_in"} to requests
// without a logged-in user. Use it after Middleware, on the routes or groups
// that need a login.
func RequireAuth() gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, ok := CurrentUser(c); !ok {
			c.Header("Cache-Control", "no-store")
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "login required", "code": SessionNotLoggedIn})
			return
		}
		c.Next()
	}
}

// httpStatuser is implemented by every error type of this package.
type httpStatuser interface{ HTTPStatus() int }

// errorReply is what a failed request is answered with.
type errorReply struct {
	status    int
	code, msg string
}

// replyFor maps err to a status and a safe message, and logs the cause.
// Internal detail never reaches the response.
func (m *Manager) replyFor(c *gin.Context, err error) errorReply {
	r := errorReply{http.StatusInternalServerError, "internal_error", "something went wrong"}
	var (
		fe *OAuthFlowError
		se *SessionError
		me *MobileIntegrationError
		st *StorageError
	)
	switch {
	case errors.As(err, &st):
		r.code, r.msg = "storage_unavailable", "the session store is unavailable; please try again shortly"
	case errors.As(err, &fe):
		r.code, r.msg = fe.Code, fe.Message
	case errors.As(err, &me):
		r.code, r.msg = me.Code, me.Message
	case errors.As(err, &se):
		r.code, r.msg = se.Code, "login required"
	}
	var hs httpStatuser
	if errors.As(err, &hs) {
		r.status = hs.HTTPStatus()
	}
	level := m.log.Warn
	if r.status >= 500 {
		level = m.log.Error
	}
	level("request failed", "path", c.FullPath(), "status", r.status, "code", r.code, "err", err)
	c.Header("Cache-Control", "no-store")
	if r.status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	return r
}

// abortWithError answers err as JSON {"error": safe message, "code": code}.
func (m *Manager) abortWithError(c *gin.Context, err error) {
	r := m.replyFor(c, err)
	c.AbortWithStatusJSON(r.status, gin.H{"error": r.msg, "code": r.code})
}
