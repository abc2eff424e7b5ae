// Package indigoclient adapts indigo's AT Protocol OAuth client
// (github.com/bluesky-social/indigo/atproto/auth/oauth) to ginoauth's OAuth
// client contract, oauthclient.Client, and keeps indigo's data (pending
// requests, tokens, DPoP keys) in a storage.Store with TTLs:
//
//	config := oauth.NewPublicConfig(
//		"https://myapp.example/oauth-client-metadata.json",
//		"https://myapp.example/oauth/callback",
//		[]string{"atproto", "repo:app.bsky.feed.post?action=create"},
//	)
//	client := indigoclient.New(config, store, indigoclient.Options{})
//	defer client.Close()
//	mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, ...})
//
// For development on your own machine, LocalhostConfig is indigo's loopback
// client. The package links no web framework: a background worker can use
// it alone (Client.Resume, APIClient).
//
// A confidential client (longer sessions) signs its requests with a P-256
// key: config.SetClientSecret for one key, or Options.Keys for a KeySet of
// several (ParseClientKey reads JWK, PEM and goat's multibase keys), which
// rotates without logging anyone out. The authorization server binds each
// session to the key of its login, so each session records its key id and
// every later request for it is signed with that key; the JWKS publishes
// the keys in use, and a retired key's sessions are ended (see the README,
// "Rotating the client key").
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
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/bluesky-social/indigo/util/ssrf"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// Options tune a Client; zero values get defaults.
type Options struct {
	// HTTPClient carries every request: resolution of the PDS and its
	// authorization server, PAR, token requests and PDS calls. Default: a
	// client with a 30 s timeout whose transport refuses private and
	// loopback addresses (indigo's SSRF guard), since the endpoints come from
	// documents on the network. Tests and local development set their own.
	HTTPClient *http.Client
	// Directory resolves handles and DIDs. Default: indigo's resolver (DNS
	// and HTTPS handles, PLC, did:web) behind the same SSRF guard, which
	// also refuses reserved names (.local, .internal, .onion, .test, ...)
	// before any lookup. Tests with local accounts set their own.
	Directory identity.Directory
	// StorageTimeout bounds each storage operation. Default 3 seconds.
	StorageTimeout time.Duration
	// BrowserURL, if set, rewrites the authorization URL before the browser
	// is sent there. Only for local development servers (such as
	// ginoauthtest's) whose public https origin a real browser cannot reach.
	BrowserURL func(authorizeURL string) string
	// Metadata, if set, can add fields (client_name, logo_uri, ...) to the
	// client metadata document served by the Manager.
	Metadata func(*oauth.ClientMetadata)
	// Metrics, if set, receives token refresh measurements (lock waits,
	// grants by outcome); ginoauth/prommetrics implements it.
	Metrics oauthclient.RefreshMetrics
	// GrantLifetime and RefreshInactivity are the authorization server's
	// limits on a grant, which token responses do not state: how long
	// after the login it ends whatever happens, and how long its refresh
	// token lives unused. Defaults: the reference server's (public client:
	// two weeks, both; confidential client: two years, and three months).
	// The Client keeps each OAuth session exactly as long as they allow
	// and reports them (Client.GrantLimits).
	GrantLifetime, RefreshInactivity time.Duration
	// Now is the Client's clock for the grant's limits. Default time.Now.
	Now func() time.Time
	// Keys, if set, makes the client confidential with several signing
	// keys (see NewKeySet and the README, "Rotating the client key"): new
	// logins are signed with the current key, every session keeps the key
	// it was bound to, and the metadata publishes only the keys in use.
	// The ClientConfig's own key (SetClientSecret) is then not used for
	// signing; its key id, if any, names the key that sessions stored before
	// key sets (which record none) are bound to. Without Keys, a config with
	// SetClientSecret is a key set of that one key.
	Keys   *KeySet
	Logger *slog.Logger
}

// Client is a oauthclient.Client backed by an indigo oauth.ClientApp.
// Close it when done: it may be finishing a token save or a lock release
// in the background (see Client.Resume).
type Client struct {
	app      *oauth.ClientApp
	store    *AuthStore
	locks    lease.ProcessLocks // refresh locks when the Storage has no Locker
	browser  func(string) string
	metadata func(*oauth.ClientMetadata)
	log      *slog.Logger
	bg       background
	rescued  rescuedTokens
	// saveBudget is the package's saveBudget; tests shorten it.
	saveBudget time.Duration
	// refreshLease is the package's refreshLease; tests shorten it.
	refreshLease lease.Policy
	sets         permissionSets
	metrics      oauthclient.RefreshMetrics

	notifyMu sync.Mutex
	notify   []func(oauthclient.Refresh) // OnRefresh's functions
	// keys is the confidential client's key set (nil: a public client);
	// legacyKID the key sessions that record none are bound to.
	keys      *KeySet
	legacyKID string
	keyUse    keyUseCache
}

var (
	_ oauthclient.Client           = (*Client)(nil)
	_ oauthclient.MetadataProvider = (*Client)(nil)
	_ oauthclient.GrantLimiter     = (*Client)(nil)
	_ oauthclient.RefreshNotifier  = (*Client)(nil)
	_ oauthclient.Authenticator    = (*Client)(nil)

	_ oauthclient.RegistrationReporter = (*Client)(nil)
)

// OnRefresh implements oauthclient.RefreshNotifier: f is called after
// every token refresh this Client completes.
func (c *Client) OnRefresh(f func(oauthclient.Refresh)) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.notify = append(c.notify, f)
}

// notifyRefresh tells OnRefresh's functions about a refresh of d's
// session. saved says whether the tokens are in storage, and so whether
// the grant's limits can be read back.
func (c *Client) notifyRefresh(ctx context.Context, d oauth.ClientSessionData, previousScopes []string, saved bool) {
	c.notifyMu.Lock()
	fs := slices.Clone(c.notify)
	c.notifyMu.Unlock()
	if len(fs) == 0 {
		return
	}
	r := oauthclient.Refresh{DID: d.AccountDID.String(), SessionID: d.SessionID, Scopes: slices.Clone(d.Scopes), PreviousScopes: previousScopes}
	if saved {
		r.RefreshBy, r.EndsAt, _ = c.GrantLimits(ctx, r.DID, r.SessionID)
	}
	for _, f := range fs {
		f(r)
	}
}

// New returns a Client for config (see oauth.NewPublicConfig,
// LocalhostConfig and ClientConfig.SetClientSecret) that keeps its data in
// storage. Pass the same storage as the Manager's. Every instance of one app
// must use the same config (the same client_id): tokens are bound to the
// client they were issued to.
func New(config oauth.ClientConfig, storage storage.Store, opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	keys, legacyKID := keySetOf(config, opts)
	if keys != nil {
		// indigo's metadata and checks see a confidential client; every
		// assertion is signed by c.clientAssertion with a session's key.
		cur := keys.Current()
		config.PrivateKey, config.KeyID = cur.Key, &cur.ID
	}
	if config.IsConfidential() {
		if opts.GrantLifetime <= 0 {
			opts.GrantLifetime = confidentialGrantLifetime
		}
		if opts.RefreshInactivity <= 0 {
			opts.RefreshInactivity = confidentialRefreshInactivity
		}
	}
	store := NewAuthStore(storage, AuthStoreOptions{
		StorageTimeout: opts.StorageTimeout, Logger: opts.Logger,
		GrantLifetime: opts.GrantLifetime, RefreshInactivity: opts.RefreshInactivity, Now: opts.Now,
	})
	// Built by hand rather than with oauth.NewClientApp, whose default
	// directory starts cache goroutines that can never be stopped.
	app := &oauth.ClientApp{Config: &config, Store: store, Resolver: oauth.NewResolver(), Dir: opts.Directory}
	if config.UserAgent != "" {
		app.Resolver.UserAgent = config.UserAgent
	}
	if opts.HTTPClient != nil {
		app.Client = opts.HTTPClient
		app.Resolver.Client = opts.HTTPClient
	} else {
		app.Client = &http.Client{Timeout: 30 * time.Second, Transport: ssrf.PublicOnlyTransport()}
	}
	if app.Dir == nil {
		app.Dir = newPublicDirectory(app.Resolver.UserAgent)
	}
	c := &Client{app: app, store: store, browser: opts.BrowserURL, metadata: opts.Metadata, log: opts.Logger, saveBudget: saveBudget, refreshLease: refreshLease, metrics: opts.Metrics, keys: keys, legacyKID: legacyKID}
	if c.metrics == nil {
		c.metrics = noRefreshMetrics{}
	}
	c.bg.init()
	if keys != nil {
		if _, ok := keys.byID[legacyKID]; !ok {
			c.log.Warn("sessions stored before key sets are bound to the ClientConfig's key id, which the key set does not hold; they cannot refresh on this instance", "kid", legacyKID)
		}
		if strings.HasPrefix(config.ClientID, "http://localhost") {
			c.log.Warn("a loopback (http://localhost) client is always public; its client keys are not used by authorization servers")
		}
	}
	return c
}

// LocalhostConfig is indigo's development client configuration
// (oauth.NewLocalhostConfig: client_id http://localhost?redirect_uri=...,
// no metadata document) with the port left out of the client_id. Loopback
// redirect URIs match on any port (RFC 8252, section 7.3), so every
// instance of an app on 127.0.0.1, whatever its port, is one client and can
// refresh and revoke the tokens another instance obtained. callbackURL is
// this instance's own callback, such as http://127.0.0.1:8081/oauth/callback.
func LocalhostConfig(callbackURL string, scopes []string) oauth.ClientConfig {
	portless := callbackURL
	if u, err := url.Parse(callbackURL); err == nil && u.Port() != "" {
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
		portless = u.String()
	}
	cfg := oauth.NewLocalhostConfig(portless, scopes)
	cfg.CallbackURL = callbackURL
	return cfg
}

// Store returns the AuthStore the Client keeps indigo's data in, to read a
// stored OAuth session (its scopes, its server) outside a request.
func (c *Client) Store() *AuthStore { return c.store }

// Close stops the Client's background work: it makes a last attempt at
// saving rotated tokens whose save failed (see Client.Resume) and at releasing
// refresh locks whose release failed, then waits for that work to end. The
// Client must not be used afterwards. Close is safe to call more than once.
func (c *Client) Close() error {
	c.bg.close()
	return nil
}

// Authorize implements oauthclient.Client. It resolves the account's PDS
// and authorization server (or starts from req.Server when the user has no
// handle yet), sends the pushed authorization request itself, so that it
// can carry prompt as well as login_hint and the login's own scopes, and
// fails when the pending request cannot be stored (indigo's StartAuthFlow
// ignores that error).
func (c *Client) Authorize(ctx context.Context, req oauthclient.AuthorizeRequest) (*oauthclient.Authorization, error) {
	scopes, err := c.loginScopes(req.Scopes)
	if err != nil {
		return nil, err
	}
	unreachable := func(err error) error {
		return &oauthclient.FlowError{Kind: oauthclient.ErrServerUnavailable, Message: "the account's authorization server could not be reached; please try again", Err: err}
	}
	var (
		meta *oauth.AuthServerMetadata
		did  *syntax.DID
	)
	if req.Identifier == "" {
		if meta, err = c.serverMetadata(ctx, req.Server); err != nil {
			return nil, err
		}
	} else {
		atid, err := syntax.ParseAtIdentifier(req.Identifier)
		if err != nil {
			return nil, &oauthclient.FlowError{Kind: oauthclient.ErrInvalidIdentifier, Message: "that is not a valid handle", Err: err}
		}
		ident, err := c.app.Dir.Lookup(ctx, atid)
		if err != nil {
			return nil, lookupError(atid, err)
		}
		host := ident.PDSEndpoint()
		if host == "" {
			return nil, &oauthclient.FlowError{Kind: oauthclient.ErrAccountNotFound, Message: "that account has no PDS to log in with", Err: errors.New("no atproto_pds service in DID document")}
		}
		asURL, err := c.app.Resolver.ResolveAuthServerURL(ctx, host)
		if err != nil {
			return nil, unreachable(err)
		}
		if meta, err = c.app.Resolver.ResolveAuthServerMetadata(ctx, asURL); err != nil {
			return nil, unreachable(err)
		}
		did = &ident.DID // the token's sub must be this account
	}
	hint := req.LoginHint
	if hint == "" {
		hint = req.Identifier
	}
	pr := pushedRequest{state: randomString(16), scopes: scopes, loginHint: hint, prompt: req.Prompt}
	if c.keys != nil {
		// The login is bound to the current key from its PAR on; it is in
		// the key's index before the server can fetch the metadata to check
		// the PAR, so every instance publishes the key by then.
		cur := c.keys.Current()
		pr.key = &cur
		if err := c.indexKey(ctx, cur.ID, pendingMemberPref+pr.state, requestTTL(req.TTL, c.store.authRequestTTL)); err != nil {
			return nil, err
		}
	}
	info, err := c.sendPAR(ctx, meta, pr)
	if err != nil {
		var te *tokenError
		if errors.As(err, &te) && te.Code == "invalid_scope" {
			return nil, &oauthclient.FlowError{Kind: oauthclient.ErrInvalidScope, Message: "the account's server refused the permissions this app asked for", Err: err}
		}
		return nil, unreachable(err)
	}
	info.AccountDID = did
	kid := ""
	if pr.key != nil {
		kid = pr.key.ID
	}
	if err := c.store.saveAuthRequest(withRequestTTL(ctx, req.TTL), &storedAuthRequest{AuthRequestData: *info, ClientKeyID: kid}); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("client_id", c.app.Config.ClientID)
	q.Set("request_uri", info.RequestURI)
	authURL := meta.AuthorizationEndpoint + "?" + q.Encode()
	if c.browser != nil {
		authURL = c.browser(authURL)
	}
	return &oauthclient.Authorization{URL: authURL, State: info.State, Scopes: scopes}, nil
}

// loginScopes returns the scopes to request: the client's configured ones,
// or the login's own, which must be among those the client metadata
// declares (the server refuses others) and always include atproto.
func (c *Client) loginScopes(want []string) ([]string, error) {
	declared := c.app.Config.Scopes
	if len(want) == 0 {
		return declared, nil
	}
	out := []string{"atproto"}
	for _, s := range want {
		switch {
		case s == "atproto" || slices.Contains(out, s):
		case !slices.Contains(declared, s):
			return nil, &oauthclient.FlowError{Kind: oauthclient.ErrInvalidScope, Message: "this app asked for a permission it does not declare",
				Err: fmt.Errorf("scope %q is not in the client's declared scopes %q", s, declared)}
		default:
			out = append(out, s)
		}
	}
	return out, nil
}

// serverMetadata finds the authorization server for a login that starts
// from a server URL: the URL of an authorization server (an entryway such
// as https://bsky.social), or of a PDS, whose protected-resource metadata
// names its authorization server.
func (c *Client) serverMetadata(ctx context.Context, server string) (*oauth.AuthServerMetadata, error) {
	meta, err := c.app.Resolver.ResolveAuthServerMetadata(ctx, server)
	if err == nil {
		return meta, nil
	}
	asURL, perr := c.app.Resolver.ResolveAuthServerURL(ctx, server)
	if perr == nil {
		if meta, perr = c.app.Resolver.ResolveAuthServerMetadata(ctx, asURL); perr == nil {
			return meta, nil
		}
	}
	return nil, &oauthclient.FlowError{Kind: oauthclient.ErrServerUnavailable, Message: "that server could not be reached, or it does not offer AT Protocol login", Err: errors.Join(err, perr)}
}

// lookupError tells an account that does not exist (400 resolve_failed)
// from a lookup that could not be completed (502 server_unavailable).
func lookupError(atid syntax.AtIdentifier, err error) error {
	if isMissingAccount(err) {
		msg := "no account was found for that handle"
		if atid.IsDID() {
			msg = "no account was found for that DID"
		}
		return &oauthclient.FlowError{Kind: oauthclient.ErrAccountNotFound, Message: msg, Err: err}
	}
	return &oauthclient.FlowError{Kind: oauthclient.ErrServerUnavailable, Message: "the account could not be looked up right now; please try again", Err: err}
}

// Callback implements oauthclient.Client: it checks state, then error,
// then iss, exchanges the code with the PKCE verifier under DPoP, and checks
// the token's sub against the account the login started with (tokens
// issued for another account are revoked at once). The handle is taken
// from a verified resolution of the DID, never from what the user typed.
func (c *Client) Callback(ctx context.Context, params url.Values, sessionTTL time.Duration) (*oauthclient.Grant, error) {
	sd, key, err := c.exchangeCode(ctx, params)
	if err != nil {
		return nil, callbackError(err)
	}
	st, err := c.bindSession(ctx, sd, key, sessionTTL)
	if err != nil {
		_ = c.revokeSessionData(context.WithoutCancel(ctx), *sd, key)
		return nil, err
	}
	refreshBy, endsAt := st.limits()
	return &oauthclient.Grant{DID: sd.AccountDID.String(), Handle: c.verifiedHandle(ctx, sd.AccountDID), OAuthSessionID: sd.SessionID, Scopes: sd.Scopes,
		RefreshBy: refreshBy, EndsAt: endsAt}, nil
}

// Authenticate implements oauthclient.Authenticator: the checks and the
// code exchange of Callback, then the tokens are revoked at once and never
// stored (only the pending request of the login is consumed). A failed
// revocation is logged: the tokens are not kept anywhere either way.
func (c *Client) Authenticate(ctx context.Context, params url.Values) (*oauthclient.Grant, error) {
	sd, key, err := c.exchangeCode(ctx, params)
	if err != nil {
		return nil, callbackError(err)
	}
	if err := c.revokeSessionData(context.WithoutCancel(ctx), *sd, key); err != nil {
		c.log.Warn("revoking the tokens of an authentication-only login failed", "did", sd.AccountDID, "err", err)
	}
	return &oauthclient.Grant{DID: sd.AccountDID.String(), Handle: c.verifiedHandle(ctx, sd.AccountDID), Scopes: sd.Scopes}, nil
}

// verifiedHandle is did's handle from a verified resolution, or "".
func (c *Client) verifiedHandle(ctx context.Context, did syntax.DID) string {
	if ident, err := c.app.Dir.LookupDID(ctx, did); err == nil && !ident.Handle.IsInvalidHandle() {
		return ident.Handle.String()
	}
	return ""
}

// callbackError classifies a failed callback for oauthclient.
func callbackError(err error) error {
	var cbErr *oauth.AuthRequestCallbackError
	switch {
	case errors.As(err, &cbErr):
		msg := "the authorization server refused the login"
		if cbErr.ErrorCode == "access_denied" {
			msg = "the login was cancelled or denied"
		}
		return &oauthclient.FlowError{Kind: oauthclient.ErrDenied, Message: msg, Err: err}
	case errors.Is(err, errWrongAccount):
		return &oauthclient.FlowError{Kind: oauthclient.ErrAccountMismatch, Message: "the login was approved for another account than the one it started with; please start again", Err: err}
	case errors.Is(err, storage.ErrNotFound):
		return &oauthclient.FlowError{Kind: oauthclient.ErrUnknownState, Message: "this login has expired or was already used; please start again", Err: err}
	case errors.Is(err, oauthclient.ErrKeyRetired):
		return &oauthclient.FlowError{Kind: oauthclient.ErrUnknownState, Message: "this login was started with a client key that has since been retired; please start again", Err: err}
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("indigoclient: code exchange: %w", err)
}

// GrantLimits implements oauthclient.GrantLimiter from the stored session:
// when its refresh token dies unless used (moved forward by every refresh)
// and when the grant ends. The limits are those of Options.GrantLifetime
// and RefreshInactivity; a server with shorter ones ends grants earlier,
// which the next refresh finds out.
func (c *Client) GrantLimits(ctx context.Context, did, sessionID string) (refreshBy, endsAt time.Time, err error) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return time.Time{}, time.Time{}, gone(err)
	}
	st, err := c.store.loadSession(ctx, d, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, time.Time{}, gone(err)
	}
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	refreshBy, endsAt = st.limits()
	return refreshBy, endsAt, nil
}

// bindSession stores a new session, bound to key (nil for a public
// client): first in the key's index, so that the key is never unpublished
// while the session lives, then the session with its kid; the login's
// pending entry in the index goes last.
func (c *Client) bindSession(ctx context.Context, sd *oauth.ClientSessionData, key *ClientKey, ttl time.Duration) (*storedSession, error) {
	kid := ""
	if key != nil {
		kid = key.ID
		// The key stays published while the grant can live (EndsAt).
		if err := c.indexKey(ctx, kid, sessionMember(sd.AccountDID, sd.SessionID), min(ttl, c.store.grantLifetime)); err != nil {
			return nil, err
		}
	}
	st, err := c.store.create(ctx, *sd, ttl, kid)
	if err != nil {
		c.unindexKey(context.WithoutCancel(ctx), kid, sessionMember(sd.AccountDID, sd.SessionID))
		return nil, err
	}
	if kid != "" {
		c.unindexKey(ctx, kid, pendingMemberPref+sd.SessionID) // the session id is the login's state
	}
	return st, nil
}

// revokeSessionData revokes the tokens in d, signing with key.
func (c *Client) revokeSessionData(ctx context.Context, d oauth.ClientSessionData, key *ClientKey) error {
	cs, err := c.clientSession(d)
	if err != nil {
		return err
	}
	return c.revokeSession(ctx, cs, key)
}

// Resume implements oauthclient.Client. A session that is not stored (or
// not readable) is gone: the error wraps oauthclient.ErrSessionGone.
func (c *Client) Resume(ctx context.Context, did, sessionID string) (oauthclient.Session, error) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return nil, gone(err)
	}
	ls, err := c.load(ctx, d, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, gone(err)
	}
	if err != nil {
		return nil, err
	}
	if c.keys != nil {
		// A session of a retired key is over at its next use on any
		// instance that knows of the retirement (the Manager then revokes
		// it with that key); one of a key this instance lacks is not.
		if _, err := c.keyFor(ls.kid, false); errors.Is(err, oauthclient.ErrKeyRetired) {
			return nil, err
		}
	}
	return &session{c: c, did: d, id: sessionID, cs: ls.cs}, nil
}

// loadedSession is a session as load found it.
type loadedSession struct {
	cs    *oauth.ClientSession
	spent string // the refresh token the tokens came from
	kid   string // the client key the session is bound to ("" if public)
}

// load builds a fresh indigo ClientSession from the newest copy of the
// session's data: tokens whose save is still pending in this process (see
// Client.Resume), else the stored record.
func (c *Client) load(ctx context.Context, did syntax.DID, sessionID string) (*loadedSession, error) {
	data, kid, ok := c.rescued.get(did, sessionID)
	if !ok {
		st, err := c.store.loadSession(ctx, did, sessionID)
		if err != nil {
			return nil, err
		}
		c.store.nonces.apply(&st.Data)
		data, kid = st.Data, st.KeyID
	} else {
		c.store.nonces.apply(&data)
	}
	cs, err := c.clientSession(data)
	if err != nil {
		return nil, err
	}
	return &loadedSession{cs: cs, spent: data.RefreshToken, kid: c.sessionKID(kid)}, nil
}

// clientSession makes an indigo ClientSession of data.
func (c *Client) clientSession(data oauth.ClientSessionData) (*oauth.ClientSession, error) {
	priv, err := atcrypto.ParsePrivateMultibase(data.DPoPPrivateKeyMultibase)
	if err != nil {
		return nil, fmt.Errorf("indigoclient: unreadable DPoP key in session record: %w", storage.ErrNotFound)
	}
	cs := &oauth.ClientSession{Client: c.app.Client, Config: c.app.Config, Data: &data, DPoPPrivateKey: priv}
	// indigo calls this after every nonce update and after a refresh, with
	// its whole session data. Only the nonces are taken from it: rotated
	// tokens are saved by Session.refresh, under the refresh lock, and a
	// stale copy of the tokens is never written back.
	cs.PersistSessionCallback = func(_ context.Context, d *oauth.ClientSessionData) { c.store.nonces.remember(d) }
	return cs, nil
}

// Revoke implements oauthclient.Client: it revokes the access and refresh
// tokens at the authorization server, then deletes the stored session even
// if revocation failed, and returns any failure. It holds the session's
// refresh lock meanwhile, so it revokes the tokens that are current at that
// moment even while a refresh is in flight, and no refresh can start from
// tokens it is revoking.
func (c *Client) Revoke(ctx context.Context, did, sessionID string) error {
	d, err := syntax.ParseDID(did)
	if err != nil {
		return nil
	}
	held, lockErr := c.lockWithin(ctx, refreshLockName(d, sessionID))
	if lockErr != nil {
		// Revoking what is stored is still better than leaving live
		// tokens behind; the lock wait already outlasted any lease.
		c.log.Warn("revoking without the refresh lock", "did", d, "session", shortHash(sessionID), "err", lockErr)
	} else {
		defer c.release(held)
	}
	ls, err := c.load(ctx, d, sessionID)
	if errors.Is(err, storage.ErrNotFound) {
		c.unindexKey(ctx, "", sessionMember(d, sessionID)) // in case a key's index still lists it
		return nil
	}
	if err != nil {
		return err
	}
	var revokeErr error
	if ls.cs.Data.AuthServerRevocationEndpoint != "" {
		var key *ClientKey
		if c.keys != nil {
			key, revokeErr = c.keyFor(ls.kid, true)
		}
		if revokeErr == nil {
			revokeErr = c.revokeSession(ctx, ls.cs, key)
		}
	}
	c.rescued.drop(d, sessionID)
	if err := c.store.DeleteSession(ctx, d, sessionID); err != nil {
		return errors.Join(revokeErr, err)
	}
	c.unindexKey(ctx, ls.kid, sessionMember(d, sessionID))
	return revokeErr
}

// ClientMetadata implements oauthclient.MetadataProvider. Confidential
// clients get their public JWKS inline: the keys in use (see PublicJWKS).
func (c *Client) ClientMetadata() any {
	m := c.app.Config.ClientMetadata()
	if c.keys != nil {
		jwks := c.PublicJWKS().(oauth.JWKS)
		m.JWKS = &jwks
	}
	if c.metadata != nil {
		c.metadata(&m)
	}
	return m
}

// Registration implements oauthclient.RegistrationReporter: the client id,
// the redirect URI its logins come back to, its scopes and, for a
// confidential client, the id of the key it signs new logins with.
func (c *Client) Registration() oauthclient.Registration {
	cfg := c.app.Config
	r := oauthclient.Registration{ClientID: cfg.ClientID, RedirectURIs: []string{cfg.CallbackURL}, Scopes: slices.Clone(cfg.Scopes)}
	if c.keys != nil { // every confidential client has its key set
		r.Confidential, r.KeyIDs = true, []string{c.keys.Current().ID}
	}
	return r
}

// PublicJWKS implements oauthclient.MetadataProvider: the public halves of
// the current and next keys and of the previous keys that a live session
// or login still uses; never a retired key, never a private member. An
// empty set for a public client.
func (c *Client) PublicJWKS() any {
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.store.timeout)
	defer cancel()
	return c.publicJWKS(ctx)
}

// gone reports that an OAuth session no longer exists, with its cause.
func gone(cause error) error {
	return fmt.Errorf("%w: %w", oauthclient.ErrSessionGone, cause)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// noRefreshMetrics is the default RefreshMetrics.
type noRefreshMetrics struct{}

func (noRefreshMetrics) RefreshLockWaited(time.Duration)       {}
func (noRefreshMetrics) RefreshFinished(string, time.Duration) {}
