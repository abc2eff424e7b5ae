package ginoauth

import (
	"net/http"
	"strings"
)

// The library's errors are typed so callers can branch with errors.As. Each
// type has an HTTPStatus method giving the status the prebuilt handlers
// answer with, and a message that is safe to show to end users; the wrapped
// cause (Unwrap) may hold internal detail and is only ever logged.

// ConfigurationError reports an invalid [Config] given to [New].
type ConfigurationError struct {
	Field  string // the Config field at fault, e.g. "CookieSecret"
	Reason string
}

func (e *ConfigurationError) Error() string {
	return "ginoauth: invalid config: " + e.Field + ": " + e.Reason
}

// HTTPStatus is 500: a configuration error is the operator's, not the user's.
func (e *ConfigurationError) HTTPStatus() int { return http.StatusInternalServerError }

// Session error codes, found in SessionError.Code.
const (
	SessionNotLoggedIn   = "not_logged_in"   // no session cookie, or its record is gone (logged out)
	SessionExpired       = "session_expired" // absolute lifetime or idle timeout passed
	SessionOAuthGone     = "oauth_session_gone"
	SessionInvalidCookie = "invalid_cookie" // tampered, foreign or oversized cookie
	SessionInvalidToken  = "invalid_token"  // a native app's bearer token that is malformed or not one
)

// SessionError reports that a request has no usable session.
type SessionError struct {
	Code string // one of the Session* constants
	Err  error  // cause, for logs; may be nil
}

func (e *SessionError) Error() string {
	msg := "ginoauth: session: " + e.Code
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *SessionError) Unwrap() error { return e.Err }

// HTTPStatus is 401.
func (e *SessionError) HTTPStatus() int { return http.StatusUnauthorized }

// OAuth flow error codes, found in OAuthFlowError.Code.
const (
	FlowInvalidHandle   = "invalid_handle"     // the handle is not valid AT Protocol syntax
	FlowResolveFailed   = "resolve_failed"     // the handle or its PDS could not be resolved
	FlowInvalidRequest  = "invalid_request"    // a malformed or oversized parameter
	FlowUnknownState    = "unknown_state"      // state unknown, expired or already used
	FlowBrowserMismatch = "browser_mismatch"   // callback from another browser than the one that started
	FlowDenied          = "access_denied"      // the user or server refused authorization
	FlowExchangeFailed  = "exchange_failed"    // the code exchange or its checks (iss, sub) failed
	FlowServerError     = "server_unavailable" // the authorization server could not be reached
	FlowInvalidScope    = "invalid_scope"      // a scope the client does not declare, or the server refused
	FlowAccountMismatch = "account_mismatch"   // a step-up approved for another account than the logged-in one
)

// OAuthFlowError reports a login flow that cannot go on.
type OAuthFlowError struct {
	Code    string // one of the Flow* constants
	Message string // a short sentence that is safe to show to the user
	Err     error  // cause, for logs; never shown to users
}

func (e *OAuthFlowError) Error() string {
	msg := "ginoauth: oauth flow: " + e.Code + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *OAuthFlowError) Unwrap() error { return e.Err }

// HTTPStatus is 502 when the authorization server could not be reached and
// 400 for everything else.
func (e *OAuthFlowError) HTTPStatus() int {
	if e.Code == FlowServerError {
		return http.StatusBadGateway
	}
	return http.StatusBadRequest
}

// Native-app flow error codes, found in MobileIntegrationError.Code.
const (
	MobileInvalidRequest     = "invalid_request"      // a malformed or oversized field
	MobileInvalidRedirectURI = "invalid_redirect_uri" // a redirect_uri that is not registered
	MobileInvalidChallenge   = "invalid_challenge"    // a missing, plain or malformed code_challenge
	MobileInvalidGrant       = "invalid_grant"        // an unknown, used or expired code, or the wrong code_verifier
	MobileDisabled           = "mobile_disabled"      // the app has no registered redirect URI
)

// MobileIntegrationError reports a failure in the native-app flow (bad app
// redirect, wrong code_verifier, unknown exchange code).
type MobileIntegrationError struct {
	Code    string // one of the Mobile* constants
	Message string // safe to show
	Err     error
}

func (e *MobileIntegrationError) Error() string {
	msg := "ginoauth: mobile: " + e.Code + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *MobileIntegrationError) Unwrap() error { return e.Err }

// HTTPStatus is 400.
func (e *MobileIntegrationError) HTTPStatus() int { return http.StatusBadRequest }

// CodeInsufficientScope is the code of a *ScopeError.
const CodeInsufficientScope = "insufficient_scope"

// ScopeError reports that the session's granted permissions do not cover
// what a route needs (see Manager.RequireScopes).
type ScopeError struct {
	Missing    []string // the permissions that are not granted
	UpgradeURL string   // where to send the user to grant them (a step-up), or ""
}

func (e *ScopeError) Error() string {
	return "ginoauth: permission not granted: " + strings.Join(e.Missing, " ")
}

// HTTPStatus is 403.
func (e *ScopeError) HTTPStatus() int { return http.StatusForbidden }
