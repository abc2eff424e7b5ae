package ginoauth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The library's errors are typed so callers can branch with errors.As, and
// each carries an ErrorCode and a message that is safe to show to end
// users; the wrapped cause (Unwrap) may hold internal detail and is only
// ever logged. ErrorResponseFor maps any of them to the HTTP status, code
// and message the prebuilt handlers answer with. A storage failure is a
// *storage.Error (503).

// ErrorCode is the machine-readable code of a failure, as the prebuilt
// handlers send it in {"error": message, "code": code}.
type ErrorCode string

// Codes of a request without a usable session (401, *SessionError).
const (
	CodeNotLoggedIn      ErrorCode = "not_logged_in"      // no session cookie or token, or its record is gone (logged out)
	CodeSessionExpired   ErrorCode = "session_expired"    // unused too long, past its cap, or idle timeout passed
	CodeGrantExpired     ErrorCode = "grant_expired"      // the login's grant reached its limit at the authorization server
	CodeOAuthSessionGone ErrorCode = "oauth_session_gone" // the login's OAuth session ended (revoked, refresh refused)
	CodeInvalidCookie    ErrorCode = "invalid_cookie"     // a tampered, foreign or oversized session cookie
	CodeInvalidToken     ErrorCode = "invalid_token"      // a native app's bearer token that is malformed or not one
)

// Codes of a login that cannot go on (*OAuthFlowError: 400, or 502 for
// CodeServerUnavailable).
const (
	CodeInvalidHandle     ErrorCode = "invalid_handle"     // the handle is not valid AT Protocol syntax
	CodeResolveFailed     ErrorCode = "resolve_failed"     // no such account, or it has no PDS
	CodeInvalidRequest    ErrorCode = "invalid_request"    // a malformed or oversized parameter
	CodeUnknownState      ErrorCode = "unknown_state"      // state unknown, expired or already used
	CodeBrowserMismatch   ErrorCode = "browser_mismatch"   // a callback in another browser than the one that started
	CodeAccessDenied      ErrorCode = "access_denied"      // the user or server refused authorization
	CodeExchangeFailed    ErrorCode = "exchange_failed"    // the code exchange or its checks (iss, sub) failed
	CodeServerUnavailable ErrorCode = "server_unavailable" // the account's servers could not be reached (502)
	CodeInvalidScope      ErrorCode = "invalid_scope"      // a scope the client does not declare, or the server refused
	CodeAccountMismatch   ErrorCode = "account_mismatch"   // approved for another account than the one expected
)

// Codes of other refusals and failures.
const (
	CodeCrossSite          ErrorCode = "cross_site_request"  // a state-changing request from another site (403)
	CodeInsufficientScope  ErrorCode = "insufficient_scope"  // the grant lacks a permission the route needs (403)
	CodeStorageUnavailable ErrorCode = "storage_unavailable" // the Storage failed (503)
	CodeRateLimited        ErrorCode = "rate_limited"        // too many login starts or callbacks from one address (429, see RateLimits)
	CodeInternal           ErrorCode = "internal_error"      // anything unexpected (500)
)

// The native-app flow's own codes (*MobileIntegrationError, 400), and the
// answers of the prebuilt routes that never go through ErrorHandler. They
// are documented with the routes; Go code has no need to name them.
const (
	codeInvalidRedirectURI ErrorCode = "invalid_redirect_uri"   // a redirect_uri that is not registered
	codeInvalidChallenge   ErrorCode = "invalid_challenge"      // a missing, plain or malformed code_challenge
	codeInvalidGrant       ErrorCode = "invalid_grant"          // an unknown, used or expired code, or the wrong code_verifier
	codeMobileDisabled     ErrorCode = "mobile_disabled"        // the app registers no native redirect URI
	codeMethodNotAllowed   ErrorCode = "method_not_allowed"     // a prebuilt route asked with another method (405)
	codeNoSuchSession      ErrorCode = "no_such_session"        // an end-session ref naming no live session of the user (404)
	codeUnsupportedType    ErrorCode = "unsupported_media_type" // a JSON route sent a body that is not application/json (415)
)

// ConfigurationError reports an invalid [Config] given to [New].
type ConfigurationError struct {
	Field  string // the Config field at fault, e.g. "CookieSecret"
	Reason string
}

func (e *ConfigurationError) Error() string {
	return "ginoauth: invalid config: " + e.Field + ": " + e.Reason
}

// SessionError reports that a request has no usable session (401).
type SessionError struct {
	Code ErrorCode // one of the codes of a request without a usable session
	Err  error     // cause, for logs; may be nil

	// When the request's session ended for a reason a new login fixes
	// (the authorization server revoked or refused its grant, the grant
	// expired): why, and the login route with the account's DID as
	// login_hint and this page as the return path (see
	// Config.ReturnToLogin). Empty otherwise.
	Reason   EndReason
	LoginURL string
}

func (e *SessionError) Error() string {
	msg := "ginoauth: session: " + string(e.Code)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *SessionError) Unwrap() error { return e.Err }

// OAuthFlowError reports a login flow that cannot go on (400; 502 when the
// account's servers could not be reached).
type OAuthFlowError struct {
	Code    ErrorCode // one of the codes of a login that cannot go on
	Message string    // a short sentence that is safe to show to the user
	Err     error     // cause, for logs; never shown to users
}

func (e *OAuthFlowError) Error() string {
	msg := "ginoauth: oauth flow: " + string(e.Code) + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *OAuthFlowError) Unwrap() error { return e.Err }

// MobileIntegrationError reports a failure in the native-app flow (400): a
// redirect URI that is not registered, a wrong code_verifier, an unknown
// exchange code.
type MobileIntegrationError struct {
	Code    ErrorCode
	Message string // safe to show
	Err     error
}

func (e *MobileIntegrationError) Error() string {
	msg := "ginoauth: mobile: " + string(e.Code) + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *MobileIntegrationError) Unwrap() error { return e.Err }

func mobileErr(code ErrorCode, msg string) *MobileIntegrationError {
	return &MobileIntegrationError{Code: code, Message: msg}
}

// scopeError reports that the session's granted permissions do not cover
// what a route needs (see RequireScopes); ErrorResponse carries its detail.
type scopeError struct {
	missing    []string
	upgradeURL string
}

func (e *scopeError) Error() string {
	return "ginoauth: permission not granted: " + strings.Join(e.missing, " ")
}

// crossSiteError is a request refused by the same-origin check.
type crossSiteError struct {
	// hint names the likely fix, in development only (a loopback BaseURL):
	// the origin the request came from and the one the app expects.
	hint string
}

func (crossSiteError) Error() string { return "ginoauth: cross-site request refused" }

// flowErrorFor turns an OAuth client's error into the *OAuthFlowError users
// see, keeping a *storage.Error (503) and an *OAuthFlowError as they are.
// fallback is the code of an error the client did not classify.
func flowErrorFor(err error, fallback ErrorCode) error {
	var fe *OAuthFlowError
	if errors.As(err, &fe) || isStorageErr(err) {
		return err
	}
	code, msg := fallback, ""
	for _, k := range []struct {
		kind error
		code ErrorCode
	}{
		{oauthclient.ErrInvalidIdentifier, CodeInvalidHandle}, {oauthclient.ErrAccountNotFound, CodeResolveFailed},
		{oauthclient.ErrServerUnavailable, CodeServerUnavailable}, {oauthclient.ErrInvalidScope, CodeInvalidScope},
		{oauthclient.ErrDenied, CodeAccessDenied}, {oauthclient.ErrAccountMismatch, CodeAccountMismatch},
		{oauthclient.ErrUnknownState, CodeUnknownState},
	} {
		if errors.Is(err, k.kind) {
			code = k.code
			break
		}
	}
	if cf := (*oauthclient.FlowError)(nil); errors.As(err, &cf) {
		msg = cf.Message
	}
	if msg == "" {
		msg = flowMessages[code]
	}
	return &OAuthFlowError{Code: code, Message: msg, Err: err}
}

// flowMessages are the default safe messages of the flow codes.
var flowMessages = map[ErrorCode]string{
	CodeInvalidHandle:     "that is not a valid handle; a handle looks like alice.bsky.social",
	CodeResolveFailed:     "no account was found for that handle",
	CodeServerUnavailable: "the account's authorization server could not be reached; please try again",
	CodeInvalidScope:      "the app asked for a permission that cannot be granted",
	CodeAccessDenied:      "the login was cancelled or denied",
	CodeAccountMismatch:   "the login was approved for another account than the one it started with; please start again",
	CodeUnknownState:      "this login link has expired or was already used; please start again",
	CodeExchangeFailed:    "the login could not be completed; please start again",
}

// ErrorResponse describes how a failed request is answered, for
// Config.ErrorHandler and for apps that render the library's errors
// themselves (see ErrorResponseFor).
type ErrorResponse struct {
	Status  int       // HTTP status: 400, 401, 403, 415, 429, 502, 503 or 500
	Code    ErrorCode // machine-readable code
	Message string    // a short sentence that is safe to show to the user
	Err     error     // the cause, for logs only; never show it

	// For CodeInsufficientScope: the permissions the session lacks, and
	// where to send the user to grant them ("" when there is no upgrade
	// route).
	Missing    []string
	UpgradeURL string

	// For CodeRateLimited: how long until the client may try again (also
	// sent as the Retry-After header).
	RetryAfter time.Duration

	// For a 401 whose session ended for a reason a new login fixes: why
	// (sent as "reason"), and where to log in again ("login"); see
	// SessionError.
	Reason   EndReason
	LoginURL string
}

// ErrorResponseFor maps any error the library returns to the status, code
// and safe message the prebuilt handlers answer with. Internal detail never
// reaches Message; unknown errors are 500 CodeInternal.
func ErrorResponseFor(err error) ErrorResponse {
	r := ErrorResponse{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "something went wrong", Err: err}
	var (
		re *requestError
		fe *OAuthFlowError
		se *SessionError
		me *MobileIntegrationError
		st *storage.Error
		pe *scopeError
		ce *ConfigurationError
		rl *rateLimitedError
		cs crossSiteError
	)
	switch {
	case errors.As(err, &cs):
		r.Status, r.Code, r.Message = http.StatusForbidden, CodeCrossSite, "this request came from another site, so it was refused"
		if cs.hint != "" {
			r.Message += " (" + cs.hint + ")"
		}
	case errors.As(err, &pe):
		r.Status, r.Code, r.Message = http.StatusForbidden, CodeInsufficientScope, "this needs a permission you have not granted to the app"
		r.Missing, r.UpgradeURL = pe.missing, pe.upgradeURL
	case errors.As(err, &rl):
		r.Status, r.Code, r.Message = http.StatusTooManyRequests, CodeRateLimited, "too many login attempts from your network; please wait a minute and try again"
		r.RetryAfter = rl.retryAfter
	case errors.As(err, &re):
		r.Status, r.Code, r.Message = http.StatusBadRequest, CodeInvalidRequest, re.msg
		if re.unsupportedType {
			r.Status, r.Code = http.StatusUnsupportedMediaType, codeUnsupportedType
		}
	case errors.As(err, &st):
		r.Status, r.Code, r.Message = http.StatusServiceUnavailable, CodeStorageUnavailable, "the session store is unavailable; please try again shortly"
	case errors.As(err, &fe):
		r.Status, r.Code, r.Message = http.StatusBadRequest, fe.Code, fe.Message
		if fe.Code == CodeServerUnavailable {
			r.Status = http.StatusBadGateway
		}
	case errors.As(err, &me):
		r.Status, r.Code, r.Message = http.StatusBadRequest, me.Code, me.Message
	case errors.As(err, &se):
		r.Status, r.Code, r.Message = http.StatusUnauthorized, se.Code, "login required"
		r.Reason, r.LoginURL = se.Reason, se.LoginURL
	case errors.As(err, &ce):
		// The operator's mistake, not the user's: 500 with the generic message.
	}
	return r
}

// isStorageErr reports whether err is a storage failure (503).
func isStorageErr(err error) bool {
	var se *storage.Error
	return errors.As(err, &se)
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
	case r.Status == http.StatusTooManyRequests:
		level = m.log.Debug // a flood must not flood the logs
	}
	level("request failed", "path", c.FullPath(), "status", r.Status, "code", string(r.Code), "err", err)
	c.Header("Cache-Control", "no-store")
	if _, bearer := bearerToken(c.Request); bearer && r.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`) // RFC 6750
	}
	if r.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	if r.RetryAfter > 0 {
		c.Header("Retry-After", retryAfterSeconds(r.RetryAfter))
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
	if r.LoginURL != "" {
		body["reason"], body["login"] = r.Reason, r.LoginURL
	}
	c.AbortWithStatusJSON(r.Status, body)
}
