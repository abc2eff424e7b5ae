package oauthclient

import (
	"context"
	"net/url"
	"time"
)

// The optional capabilities of a Client or a Session (see the package doc:
// the contract grows only this way).

// MetadataProvider is an optional Client capability. When the client has
// it, ginoauth serves its client metadata document and its public JWKS.
type MetadataProvider interface {
	// ClientMetadata is the client metadata document, ready for json.Marshal.
	ClientMetadata() any
	// PublicJWKS is the client's public key set (no private members), ready
	// for json.Marshal; an empty set for public clients.
	PublicJWKS() any
}

// PermissionSetResolver is an optional Client capability: it resolves a
// permission set (the NSID of an include: scope) to the granular
// permissions it grants, as scope strings, with aud given to the
// permissions that inherit it. Without it, a required include: permission
// is covered only when the server granted the include: scope itself.
type PermissionSetResolver interface {
	ResolvePermissionSet(ctx context.Context, nsid, aud string) ([]string, error)
}

// Refresher is an optional Session capability: RefreshTokens refreshes the
// session's tokens now, coordinated like a refresh a 401 triggers, as the
// native-app token rotation needs to check that the login still holds.
// When the server refuses the refresh for good, the error wraps
// ErrSessionGone.
type Refresher interface {
	RefreshTokens(ctx context.Context) error
}

// GrantLimiter is an optional Client capability: the limits the
// authorization server puts on a login's grant, which token responses do
// not state (the AT Protocol's reference server: a public client's grant
// ends two weeks after the login; a confidential client's lives up to two
// years if it is refreshed at least every three months). With it, a device
// session never outlives its grant, ends with its own reason when the
// grant does, and can be kept alive by a refresh before the inactivity
// limit (ginoauth.Config.KeepAlive).
type GrantLimiter interface {
	// GrantLimits returns, for the session as stored now, refreshBy (when
	// its refresh token dies unless used before) and endsAt (when the grant
	// ends whatever happens; refreshBy is never later). A refresh moves
	// refreshBy forward, up to endsAt. A session that no longer exists
	// gives an error wrapping ErrSessionGone.
	GrantLimits(ctx context.Context, did, sessionID string) (refreshBy, endsAt time.Time, err error)
}

// RefreshNotifier is an optional Client capability: the client calls each
// function registered with OnRefresh after every token refresh it
// completes in this process, so that what depends on the grant follows it
// (ginoauth moves its device sessions' expiry with the grant's limits and
// records the scopes granted now). The function must return quickly and
// not call back into the client.
type RefreshNotifier interface {
	OnRefresh(f func(Refresh))
}

// Refresh describes one completed token refresh. It holds no token.
type Refresh struct {
	DID, SessionID string
	// Scopes are the scopes granted with the new tokens; PreviousScopes
	// those granted before (a permission set re-resolved at refresh can
	// change them).
	Scopes, PreviousScopes []string
	// RefreshBy and EndsAt are the grant's limits after the refresh, as
	// GrantLimiter reports them (zero when the client cannot say).
	RefreshBy, EndsAt time.Time
}

// Authenticator is an optional Client capability, for apps that only need
// to know who the user is (ginoauth's Config.AuthenticationOnly):
// Authenticate completes a callback as Callback does (state, then error,
// then iss, the code exchange, the account check) but keeps no OAuth
// session. It writes no token to any storage and revokes the tokens the
// exchange returned before it returns. The Grant has no OAuthSessionID.
// Without it, ginoauth calls Callback and then Revoke, so the client
// stores the tokens for that moment.
type Authenticator interface {
	Authenticate(ctx context.Context, params url.Values) (*Grant, error)
}

// RefreshMetrics receives a client's token refresh measurements
// (ginoauth/prommetrics implements it; indigoclient.Options.Metrics takes
// it). Methods must be quick and safe for concurrent use.
type RefreshMetrics interface {
	// RefreshLockWaited records how long a refresh waited for its lock.
	RefreshLockWaited(took time.Duration)
	// RefreshFinished records a refresh grant: "ok", "refused" (the login
	// ended), "network" or "storage", and how long it took.
	RefreshFinished(outcome string, took time.Duration)
}

// RegistrationReporter is an optional Client capability: the client's
// registration as authorization servers see it. With it, ginoauth.New
// refuses a Config that disagrees with it (a BaseURL on another origin
// than the redirect URI, a callback route that is not its path), which
// would otherwise surface only after the consent screen, and
// Manager.SelfCheck compares the metadata document the app serves with it.
type RegistrationReporter interface {
	Registration() Registration
}

// Registration is what a RegistrationReporter reports. It holds no secret.
type Registration struct {
	// ClientID is the client_id sent to authorization servers: the URL of
	// the client metadata document, or a loopback development client's
	// http://localhost?... id (whose metadata no server fetches).
	ClientID string
	// RedirectURIs are the redirect URIs the client registers; the first
	// is the one its logins come back to.
	RedirectURIs []string
	// Scopes are every scope the client may ask for (its metadata's scope).
	Scopes []string
	// Confidential is true for a client that authenticates with a signed
	// assertion (private_key_jwt); KeyIDs are then the kids of the keys
	// it signs new logins with, which its JWKS must publish.
	Confidential bool
	KeyIDs       []string
}
