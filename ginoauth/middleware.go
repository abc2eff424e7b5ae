package ginoauth

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Middleware loads the request's session (one cookie decode, one storage
// read) and puts the user in the Gin context for CurrentUser. It never
// blocks anonymous requests. The one exception is a storage failure while a
// session cookie is present: that request gets 503, because answering it as
// "logged out" would be wrong and would hide the outage.
//
// Responses to authenticated requests get Cache-Control: no-store, so no
// shared cache keeps one user's page for another.
func (m *Manager) Middleware() gin.HandlerFunc { return m.sessionCheck(false) }

// RequireAuth lets only requests with a logged-in user through. It loads
// the session itself when Middleware did not run before it, and answers the
// others with 401 through Config.ErrorHandler (default JSON
// {"error": "login required", "code": reason}, where reason is a Session*
// code such as "not_logged_in" or "session_expired"), or 503 when storage
// cannot answer.
func (m *Manager) RequireAuth() gin.HandlerFunc { return m.sessionCheck(true) }

// sessionCheck loads the request's session and lets the request on, unless
// storage fails or, when required, nobody is logged in.
func (m *Manager) sessionCheck(required bool) gin.HandlerFunc {
	load := m.loadUser
	if required {
		load = m.ValidateSession
	}
	return func(c *gin.Context) {
		u, err := load(c)
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

// Codes of the errors that are not flow, session or mobile errors, found in
// ErrorResponse.Code.
const (
	CodeStorageUnavailable = "storage_unavailable" // the Storage failed (503)
	CodeInternal           = "internal_error"      // anything unexpected (500)
	CodeMethodNotAllowed   = "method_not_allowed"  // a prebuilt route asked with another method (405)
)

// ErrorResponse describes how a failed request is answered, for
// Config.ErrorHandler and for apps that render the library's errors
// themselves (see ErrorResponseFor).
type ErrorResponse struct {
	Status  int    // HTTP status: 400, 401, 403, 502, 503 or 500
	Code    string // machine-readable code: a Flow*, Session*, Mobile* or Code* constant
	Message string // a short sentence that is safe to show to the user
	Err     error  // the cause, for logs only; never show it

	// For CodeInsufficientScope: the permissions the session lacks, and
	// where to send the user to grant them ("" when there is no upgrade
	// route).
	Missing    []string
	UpgradeURL string
}

// ErrorResponseFor maps any error the library returns to the status, code
// and safe message the prebuilt handlers answer with. Internal detail never
// reaches Message; unknown errors are 500 CodeInternal.
func ErrorResponseFor(err error) ErrorResponse {
	r := ErrorResponse{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "something went wrong", Err: err}
	var (
		fe *OAuthFlowError
		se *SessionError
		me *MobileIntegrationError
		st *StorageError
		pe *ScopeError
	)
	switch {
	case errors.As(err, &crossSiteError{}):
		r.Code, r.Message = CodeCrossSite, "this request came from another site, so it was refused"
	case errors.As(err, &pe):
		r.Code, r.Message = CodeInsufficientScope, "this needs a permission you have not granted to the app"
		r.Missing, r.UpgradeURL = pe.Missing, pe.UpgradeURL
	case errors.As(err, &st):
		r.Code, r.Message = CodeStorageUnavailable, "the session store is unavailable; please try again shortly"
	case errors.As(err, &fe):
		r.Code, r.Message = fe.Code, fe.Message
	case errors.As(err, &me):
		r.Code, r.Message = me.Code, me.Message
	case errors.As(err, &se):
		r.Code, r.Message = se.Code, "login required"
	}
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		r.Status = hs.HTTPStatus()
	}
	return r
}

// replyFor is ErrorResponseFor, logged, with the headers every error
// answer carries.
func (m *Manager) replyFor(c *gin.Context, err error) ErrorResponse {
	r := ErrorResponseFor(err)
	level := m.log.Info // the user's mistake: a bad handle, a stale link
	switch {
	case r.Status >= 500:
		level = m.log.Error
	case r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden:
		level = m.log.Debug // every anonymous visit to a protected page
	}
	level("request failed", "path", c.FullPath(), "status", r.Status, "code", r.Code, "err", err)
	c.Header("Cache-Control", "no-store")
	if _, bearer := bearerToken(c.Request); bearer && r.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`) // RFC 6750
	}
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
	body := gin.H{"error": r.Message, "code": r.Code}
	if len(r.Missing) > 0 {
		body["missing"] = r.Missing
		if r.UpgradeURL != "" {
			body["upgrade"] = r.UpgradeURL
		}
	}
	c.AbortWithStatusJSON(r.Status, body)
}
