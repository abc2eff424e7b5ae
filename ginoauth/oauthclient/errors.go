package oauthclient

import "errors"

// Why a login or a session cannot go on. A Client's errors wrap one of
// these (directly, or through a FlowError that adds a message); ginoauth
// turns each into its own error code and HTTP status.
var (
	// ErrSessionGone: the OAuth session no longer exists (revoked, expired,
	// deleted, or its refresh refused for good). The user must log in again.
	ErrSessionGone = errors.New("oauthclient: the OAuth session is gone")
	// ErrUnknownState: the callback's state is unknown, expired or used.
	ErrUnknownState = errors.New("oauthclient: unknown or used state")
	// ErrInvalidIdentifier: the handle or DID is not valid syntax.
	ErrInvalidIdentifier = errors.New("oauthclient: invalid handle or DID")
	// ErrAccountNotFound: no such account, or it has no PDS to log in with.
	ErrAccountNotFound = errors.New("oauthclient: account not found")
	// ErrServerUnavailable: a server (resolution, PDS, authorization
	// server) could not be reached or answered wrongly.
	ErrServerUnavailable = errors.New("oauthclient: server unavailable")
	// ErrInvalidScope: a scope the client does not declare, or one the
	// server refused.
	ErrInvalidScope = errors.New("oauthclient: invalid scope")
	// ErrDenied: the user or the server refused the authorization.
	ErrDenied = errors.New("oauthclient: authorization denied")
	// ErrAccountMismatch: the login was approved for another account than
	// the one it started with.
	ErrAccountMismatch = errors.New("oauthclient: approved for another account")
	// ErrAccountMoved: the account moved to a PDS that another
	// authorization server protects; its OAuth sessions cannot follow it.
	ErrAccountMoved = errors.New("oauthclient: the account moved to another authorization server")
)

// FlowError is a login that cannot go on, with a message for the user.
// Kind is one of the Err values of this package (errors.Is matches it);
// Message is a short sentence that is safe to show (ginoauth uses its own
// for Kind when it is empty); Err is the cause, for logs only.
type FlowError struct {
	Kind    error
	Message string
	Err     error
}

func (e *FlowError) Error() string {
	msg := "oauthclient: " + e.Kind.Error()
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns Kind and the cause, so that errors.Is matches either.
func (e *FlowError) Unwrap() []error { return []error{e.Kind, e.Err} }
