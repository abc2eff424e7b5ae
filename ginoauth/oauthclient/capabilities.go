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
