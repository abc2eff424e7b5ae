package oauthclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Client is an AT Protocol OAuth client: the four things ginoauth needs
// from one.
type Client interface {
	// Authorize begins an authorization described by req. It resolves the
	// account's authorization server, sends the pushed authorization
	// request, keeps what the callback will need for req.TTL, and returns
	// the URL to send the browser to together with the state value the
	// server will echo back. State must be random, at least 128 bits, and
	// unique per call.
	//
	// Errors that say why a login cannot start wrap one of the Err values of
	// this package (see FlowError); a storage failure is a *storage.Error;
	// anything else counts as an unreachable server.
	Authorize(ctx context.Context, req AuthorizeRequest) (*Authorization, error)

	// Callback completes the flow from the callback's query parameters. It
	// checks state, then the error parameter, then iss; exchanges the code;
	// verifies the account (the token's sub); and stores the OAuth session
	// so that Resume finds it for at least sessionTTL. ginoauth has already
	// consumed its own flow record for this state and checked the browser.
	// Errors are as for Authorize; anything unclassified counts as a failed
	// exchange.
	Callback(ctx context.Context, params url.Values, sessionTTL time.Duration) (*Grant, error)

	// Resume returns a ready session for calls to the account's PDS. When
	// the session no longer exists (logged out, revoked, expired) the
	// error wraps ErrSessionGone.
	Resume(ctx context.Context, did, sessionID string) (Session, error)

	// Revoke revokes the session's tokens at the authorization server and
	// deletes the client's copy. A session that does not exist is not an
	// error. The client's copy is deleted even when revocation fails; the
	// revocation failure is still returned so it can be logged.
	Revoke(ctx context.Context, did, sessionID string) error
}

// AuthorizeRequest describes one login to [Client.Authorize].
type AuthorizeRequest struct {
	// Identifier is the handle or DID the user typed, already checked for
	// AT Protocol syntax and normalised; "" when the login starts from
	// Server instead.
	Identifier string
	// Server, when Identifier is empty, is the https origin of the
	// authorization server or PDS to start from, for a user who has no
	// handle yet or signs up ("https://bsky.social").
	Server string
	// Scopes to request; nil means the client's configured scopes. They
	// must be among the scopes the client metadata declares, and include
	// atproto (the client adds it).
	Scopes []string
	// Prompt is passed on to the authorization server: "" (its choice),
	// "login", "select_account", "consent" or "create" (sign-up).
	Prompt string
	// LoginHint is passed on as login_hint: what the user typed, as they
	// typed it (the client defaults it to Identifier).
	LoginHint string
	// TTL is how long the login may take: the client must keep what its
	// callback needs at least this long.
	TTL time.Duration
}

// Authorization is what [Client.Authorize] returns.
type Authorization struct {
	URL   string // where to redirect the browser (the authorization endpoint)
	State string // the OAuth state parameter the server will send back
	// Scopes are the scopes the client asked for (its default list when
	// the request named none), kept with the session so that a step-up
	// asks for these and more.
	Scopes []string
}

// Grant is the outcome of a completed authorization.
type Grant struct {
	DID    string // the account, from the token's sub; never from user input
	Handle string // the account's handle from a verified resolution, or "" if unverified
	// OAuthSessionID is the client's id for this OAuth session (one per
	// login, per device), as Resume and Revoke take it.
	OAuthSessionID string
	Scopes         []string // the scopes the server granted

	// The grant's limits as the client knows them (token responses do not
	// state them; see GrantLimiter); zero when it cannot say. RefreshBy is
	// when the grant dies unless it is refreshed before; EndsAt is when it
	// ends whatever happens.
	RefreshBy, EndsAt time.Time
}

// Session is a ready, authenticated OAuth session for one login of one
// account, used to call the account's PDS.
type Session interface {
	DID() string
	// HostURL is the base URL of the account's PDS.
	HostURL() string
	// Scopes are the scopes granted to this session, as of its last token
	// refresh.
	Scopes() []string
	// Do sends req, whose URL must be on HostURL, with the session's
	// credentials (a DPoP-bound access token), handling nonces and token
	// refresh. Like http.Client.Do, the caller closes the response body.
	// When the OAuth session turns out to be gone (a refresh refused for
	// good) the error wraps ErrSessionGone.
	Do(req *http.Request) (*http.Response, error)
}
