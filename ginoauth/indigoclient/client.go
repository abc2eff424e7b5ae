// Package indigoclient adapts indigo's AT Protocol OAuth client
// (github.com/bluesky-social/indigo/atproto/auth/oauth) to the
// ginoauth.OAuthClient contract, and keeps indigo's data (pending requests,
// tokens, DPoP keys) in a ginoauth.Storage with TTLs through AuthStore.
//
// indigo does the protocol: PAR, PKCE S256, DPoP with nonces, the code
// exchange with its iss and sub checks, and token refresh on invalid_token.
// The adapter adds what indigo leaves to its caller: it returns the state
// with the authorization URL (so the Manager can keep flow data server side
// instead of inside state), it fails the login when the pending request
// cannot be stored (indigo's StartAuthFlow ignores that error), it consumes
// the pending request so a callback works once, it never resurrects a
// session deleted by a concurrent logout when saving rotated tokens, and it
// reports revocation failures instead of only logging them.
package indigoclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/bluesky-social/indigo/util/ssrf"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// Options tune a Client; zero values get defaults.
type Options struct {
	// HTTPClient carries every request: resolution of the PDS and its
	// authorization server, PAR, token requests and PDS calls. Default: a
	// client with a 30 s timeout whose transport refuses private and
	// loopback addresses (indigo's SSRF guard), since the endpoints come from
	// documents on the network. Tests and local development set their own.
	HTTPClient *http.Client
	// Directory resolves handles and DIDs. Default: indigo's
	// identity.DefaultDirectory (DNS + HTTPS handles, PLC and did:web).
	Directory identity.Directory
	// AuthRequestTTL bounds a pending authorization. Default 10 minutes.
	AuthRequestTTL time.Duration
	// BrowserURL, if set, rewrites the authorization URL before the browser
	// is sent there. Only for local development servers (such as
	// ginoauthtest's) whose public https origin a real browser cannot reach.
	BrowserURL func(authorizeURL string) string
	// Metadata, if set, can add fields (client_name, logo_uri, ...) to the
	// client metadata document served by the Manager.
	Metadata func(*oauth.ClientMetadata)
	Logger   *slog.Logger
}

// Client is a ginoauth.OAuthClient backed by an indigo oauth.ClientApp.
type Client struct {
	app      *oauth.ClientApp
	store    *AuthStore
	locks    localLocks // refresh locks when the Storage has no Locker
	browser  func(string) string
	metadata func(*oauth.ClientMetadata)
	log      *slog.Logger
}

var (
	_ ginoauth.OAuthClient            = (*Client)(nil)
	_ ginoauth.ClientMetadataProvider = (*Client)(nil)
)

// New returns a Client for config (see oauth.NewPublicConfig,
// oauth.NewLocalhostConfig and ClientConfig.SetClientSecret) that keeps its
// data in storage. Pass the same storage as the Manager's.
func New(config oauth.ClientConfig, storage ginoauth.Storage, opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	store := NewAuthStore(storage, AuthStoreOptions{AuthRequestTTL: opts.AuthRequestTTL, Logger: opts.Logger})
	app := oauth.NewClientApp(&config, store)
	if opts.HTTPClient != nil {
		app.Client = opts.HTTPClient
		app.Resolver.Client = opts.HTTPClient
	} else {
		app.Client = &http.Client{Timeout: 30 * time.Second, Transport: ssrf.PublicOnlyTransport()}
	}
	if opts.Directory != nil {
		app.Dir = opts.Directory
	}
	return &Client{app: app, store: store, browser: opts.BrowserURL, metadata: opts.Metadata, log: opts.Logger}
}

// App returns the underlying indigo ClientApp, for what the adapter does not
// cover. Its Store is the Client's AuthStore.
func (c *Client) App() *oauth.ClientApp { return c.app }

// Store returns the AuthStore the Client keeps indigo's data in.
func (c *Client) Store() *AuthStore { return c.store }

// Authorize implements ginoauth.OAuthClient. It follows indigo's
// StartAuthFlow step by step so that it can return the state and fail when
// the pending request cannot be stored.
func (c *Client) Authorize(ctx context.Context, identifier string) (*ginoauth.Authorization, error) {
	atid, err := syntax.ParseAtIdentifier(identifier)
	if err != nil {
		return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowInvalidHandle, Message: "that is not a valid handle", Err: err}
	}
	ident, err := c.app.Dir.Lookup(ctx, atid)
	if err != nil {
		return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowResolveFailed, Message: "no account was found for that handle", Err: err}
	}
	host := ident.PDSEndpoint()
	if host == "" {
		return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowResolveFailed, Message: "that account has no PDS to log in with", Err: errors.New("no atproto_pds service in DID document")}
	}
	unreachable := func(err error) error {
		return &ginoauth.OAuthFlowError{Code: ginoauth.FlowServerError, Message: "the account's authorization server could not be reached; please try again", Err: err}
	}
	asURL, err := c.app.Resolver.ResolveAuthServerURL(ctx, host)
	if err != nil {
		return nil, unreachable(err)
	}
	meta, err := c.app.Resolver.ResolveAuthServerMetadata(ctx, asURL)
	if err != nil {
		return nil, unreachable(err)
	}
	info, err := c.app.SendAuthRequest(ctx, meta, c.app.Config.Scopes, identifier)
	if err != nil {
		return nil, unreachable(err)
	}
	did := ident.DID
	info.AccountDID = &did // the token's sub must match this account
	if err := c.store.SaveAuthRequestInfo(ctx, *info); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("client_id", c.app.Config.ClientID)
	q.Set("request_uri", info.RequestURI)
	authURL := meta.AuthorizationEndpoint + "?" + q.Encode()
	if c.browser != nil {
		authURL = c.browser(authURL)
	}
	return &ginoauth.Authorization{URL: authURL, State: info.State}, nil
}

// Callback implements ginoauth.OAuthClient with indigo's ProcessCallback,
// which checks state, then error, then iss, exchanges the code with the PKCE
// verifier under DPoP, and checks the token's sub against the account the
// login started with. The handle is taken from a verified resolution of the
// DID, never from what the user typed.
func (c *Client) Callback(ctx context.Context, params url.Values, sessionTTL time.Duration) (*ginoauth.Grant, error) {
	sd, err := c.app.ProcessCallback(withSessionTTL(ctx, sessionTTL), params)
	if err != nil {
		var cbErr *oauth.AuthRequestCallbackError
		switch {
		case errors.As(err, &cbErr):
			msg := "the authorization server refused the login"
			if cbErr.ErrorCode == "access_denied" {
				msg = "the login was cancelled or denied"
			}
			return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowDenied, Message: msg, Err: err}
		case errors.Is(err, ginoauth.ErrNotFound):
			return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowUnknownState, Message: "this login has expired or was already used; please start again", Err: err}
		default:
			var se *ginoauth.StorageError
			if errors.As(err, &se) {
				return nil, err
			}
			return nil, &ginoauth.OAuthFlowError{Code: ginoauth.FlowExchangeFailed, Message: "the login could not be completed; please start again", Err: err}
		}
	}
	handle := ""
	if ident, err := c.app.Dir.LookupDID(ctx, sd.AccountDID); err == nil && !ident.Handle.IsInvalidHandle() {
		handle = ident.Handle.String()
	}
	return &ginoauth.Grant{DID: sd.AccountDID.String(), Handle: handle, SessionID: sd.SessionID, Scopes: sd.Scopes}, nil
}

// Resume implements ginoauth.OAuthClient.
func (c *Client) Resume(ctx context.Context, did, sessionID string) (ginoauth.OAuthSession, error) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return nil, ginoauth.ErrNotFound
	}
	cs, err := c.resume(ctx, d, sessionID)
	if err != nil {
		return nil, err
	}
	return &Session{c: c, did: d, id: sessionID, cs: cs}, nil
}

// resume loads the stored session into a fresh indigo ClientSession.
func (c *Client) resume(ctx context.Context, did syntax.DID, sessionID string) (*oauth.ClientSession, error) {
	cs, err := c.app.ResumeSession(ctx, did, sessionID)
	if err != nil {
		return nil, err
	}
	// indigo's own callback logs the raw session id and swallows the error;
	// ours saves only while the session exists and logs a short hash.
	cs.PersistSessionCallback = func(ctx context.Context, data *oauth.ClientSessionData) {
		if err := c.store.updateSession(ctx, *data); err != nil {
			c.log.Warn("saving updated OAuth session failed", "did", data.AccountDID, "session", shortHash(data.SessionID), "err", err)
		}
	}
	return cs, nil
}

// Revoke implements ginoauth.OAuthClient: it revokes the access and refresh
// tokens at the authorization server, then deletes the stored session even
// if revocation failed, and returns any failure.
func (c *Client) Revoke(ctx context.Context, did, sessionID string) error {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return nil
	}
	cs, err := c.app.ResumeSession(ctx, d, sessionID)
	if errors.Is(err, ginoauth.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var revokeErr error
	if cs.Data.AuthServerRevocationEndpoint != "" {
		revokeErr = cs.RevokeSession(ctx)
	}
	return errors.Join(revokeErr, c.store.DeleteSession(ctx, d, sessionID))
}

// ClientMetadata implements ginoauth.ClientMetadataProvider. Confidential
// clients get their public JWKS inline.
func (c *Client) ClientMetadata() any {
	m := c.app.Config.ClientMetadata()
	if c.app.Config.IsConfidential() {
		jwks := c.app.Config.PublicJWKS()
		m.JWKS = &jwks
	}
	if c.metadata != nil {
		c.metadata(&m)
	}
	return m
}

// PublicJWKS implements ginoauth.ClientMetadataProvider.
func (c *Client) PublicJWKS() any { return c.app.Config.PublicJWKS() }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}
