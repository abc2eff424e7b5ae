package ginoauth

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// OAuthClient is the bring-your-own OAuth client contract: the four things
// the Manager needs from an AT Protocol OAuth client. The ginoauth/indigoclient
// package adapts indigo's atproto/auth/oauth ClientApp to it; any other client
// (or a hand-written one) works the same way.
//
// The client owns the protocol (PAR, PKCE S256, DPoP, the code exchange, the
// iss and sub checks, token refresh) and its own storage of flow secrets and
// tokens. The Manager owns everything about the browser: the flow record
// (return path, browser binding), the session cookie and the per-device
// session record. No application data travels inside state.
type OAuthClient interface {
	// Authorize begins an authorization described by req. It resolves the
	// account's authorization server, sends the pushed authorization
	// request, keeps what the callback will need for req.TTL, and returns
	// the URL to send the browser to together with the state value the
	// server will echo back. State must be random, at least 128 bits, and
	// unique per call.
	//
	// Return an *OAuthFlowError to choose the code users see (for example
	// FlowResolveFailed for an unknown handle); other errors are reported as
	// FlowServerError (502), and a *StorageError as 503.
	Authorize(ctx context.Context, req AuthorizeRequest) (*Authorization, error)

	// Callback completes the flow from the callback's query parameters. It
	// checks state, then the error parameter, then iss; exchanges the code;
	// verifies the account (the token's sub); and stores the OAuth session so
	// that Resume finds it for at least sessionTTL. The Manager has already
	// consumed its own flow record for this state and checked the browser.
	Callback(ctx context.Context, params url.Values, sessionTTL time.Duration) (*Grant, error)

	// Resume returns a ready session for calls to the account's PDS. When the
	// session no longer exists (logged out, revoked, expired) the error wraps
	// ErrNotFound.
	Resume(ctx context.Context, did, sessionID string) (OAuthSession, error)

	// Revoke revokes the session's tokens at the authorization server and
	// deletes the client's copy. A session that does not exist is not an
	// error. The client's copy is deleted even when revocation fails; the
	// revocation failure is still returned so it can be logged.
	Revoke(ctx context.Context, did, sessionID string) error
}

// AuthorizeRequest describes one login to [OAuthClient.Authorize].
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
	// callback needs at least this long (the Manager's Config.FlowTTL, so
	// the two lifetimes cannot disagree).
	TTL time.Duration
}

// Authorization is what [OAuthClient.Authorize] returns.
type Authorization struct {
	URL   string // where to redirect the browser (the authorization endpoint)
	State string // the OAuth state parameter the server will send back
	// Scopes are the scopes the client asked for (its default list when
	// the request named none). The Manager keeps them with the session, so
	// that a step-up asks for these and more.
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
}

// OAuthSession is a ready, authenticated OAuth session for one login of one
// account, used to call the account's PDS.
type OAuthSession interface {
	DID() string
	// HostURL is the base URL of the account's PDS.
	HostURL() string
	// Scopes are the scopes granted to this session.
	Scopes() []string
	// Do sends req, whose URL must be on HostURL, with the session's
	// credentials (DPoP-bound access token), handling nonces and token
	// refresh. Like http.Client.Do, the caller closes the response body.
	Do(req *http.Request) (*http.Response, error)
}

// ClientMetadataProvider is an optional OAuthClient capability. When the
// client has it, the prebuilt handlers serve its client metadata document
// and its public JWKS.
type ClientMetadataProvider interface {
	// ClientMetadata is the client metadata document, ready for json.Marshal.
	ClientMetadata() any
	// PublicJWKS is the client's public key set (no private members), ready
	// for json.Marshal; an empty set for public clients.
	PublicJWKS() any
}
