// Package apptest builds a real Gin app on the library, wired the way a user
// wires it, for end-to-end tests against any authorization server: the local
// one in ginoauthtest, or the reference PDS in the interop tests. It also
// gives tests ginoauthtest's cookie-jar browser wired to the app, a settable
// clock, a storage wrapper that injects faults, a transport gate that holds a
// request at a chosen moment, and a counter of the callbacks the Manager
// hands to the OAuth client.
package apptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

func init() { gin.SetMode(gin.TestMode) }

// Scopes are the scopes the test app asks for.
var Scopes = []string{"atproto", "transition:generic"}

// Options configure New.
type Options struct {
	Storage    storage.Store      // default: a new memstore
	HTTPClient *http.Client       // how the OAuth client reaches the servers
	Directory  identity.Directory // how it resolves handles and DIDs
	// Consent plays the user at the authorization server (for
	// ginoauthtest, its Server.Consent).
	Consent ginoauthtest.ConsentFunc
	// ClientConfig, if set, is used instead of a new localhost client for
	// this app's address: several instances of one app share it, as they
	// share one public URL behind a load balancer.
	ClientConfig *oauth.ClientConfig
	// Configure may change the Manager's Config before New is called.
	Configure func(*ginoauth.Config)
	// ClientOptions may change the OAuth client's options.
	ClientOptions func(*indigoclient.Options)
	// Middleware runs before the library's on every request.
	Middleware []gin.HandlerFunc
	// Logger receives the logs of the Manager and the OAuth client.
	Logger *slog.Logger
	// Scopes the client declares and asks for by default (default Scopes).
	Scopes []string
	// RefreshMetrics, if set, is the OAuth client's Options.Metrics.
	RefreshMetrics oauthclient.RefreshMetrics
	// Routes, if set, adds routes of the test's own to the app.
	Routes func(r *gin.Engine, m *ginoauth.Manager)
	// ClientKeys, if set, is the OAuth client's Options.Keys (a
	// confidential client with a key set; see Deployment).
	ClientKeys *indigoclient.KeySet
}

// App is a running test app.
type App struct {
	T           testing.TB
	Store       *FaultyStorage
	Client      *ObservedClient
	OAuthConfig *oauth.ClientConfig
	Manager     *ginoauth.Manager
	Server      *httptest.Server
	Clock       *Clock
	consent     ginoauthtest.ConsentFunc
}

// New starts the app on a loopback port; it stops at the end of the test.
//
// Routes: the prebuilt handlers, plus (behind RequireAuth) GET /api/whoami
// (the user, with the OAuth session id), GET /api/pds-session (com.atproto.server.getSession on the user's PDS; the same
// through indigo's typed client at /api/pds-session-typed), POST
// /api/post (createRecord with form field text), GET /api/record?uri=
// (getRecord), POST /api/refresh (forces a token refresh), and GET
// /dashboard, which greets the user or says "anonymous".
func New(t testing.TB, opts Options) *App {
	t.Helper()
	if opts.Storage == nil {
		opts.Storage = memstore.New()
	}
	a := &App{T: t, Store: &FaultyStorage{Store: opts.Storage}, Clock: &Clock{now: time.Now()}, consent: opts.Consent}

	// The callback URL must be known before the client exists, so listen first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	// One client_id for every instance on 127.0.0.1, whatever its port.
	scopes := Scopes
	if opts.Scopes != nil {
		scopes = opts.Scopes
	}
	oc := indigoclient.LocalhostConfig(base+"/oauth/callback", scopes)
	if opts.ClientConfig != nil {
		oc = *opts.ClientConfig
	}
	a.OAuthConfig = &oc
	copts := indigoclient.Options{
		HTTPClient: opts.HTTPClient, Directory: opts.Directory, Logger: opts.Logger, Metrics: opts.RefreshMetrics,
		Now:  a.Clock.Now, // the grant's limits on the app's clock
		Keys: opts.ClientKeys,
	}
	if opts.ClientOptions != nil {
		opts.ClientOptions(&copts)
	}
	client := indigoclient.New(oc, a.Store.clientStorage(), copts)
	a.Client = &ObservedClient{Client: client}
	if opts.ClientConfig != nil {
		a.Client.sharedOrigin = base
	}

	cfg := ginoauth.Config{
		OAuthClient:  a.Client,
		Storage:      a.Store.managerStorage(),
		CookieSecret: "an-example-cookie-secret-of-32-bytes!!",
		BaseURL:      base,
		LocalDomains: []string{"test"}, // ginoauthtest's pds.test and its accounts
		Now:          a.Clock.Now,
		Logger:       opts.Logger,
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	a.Manager, err = ginoauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := a.router(opts.Middleware)
	if opts.Routes != nil {
		opts.Routes(r, a.Manager)
	}
	a.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: r}}
	a.Server.Start()
	t.Cleanup(func() {
		a.Server.Close()
		_ = a.Manager.Close()
		_ = client.Close()
	})
	return a
}

func (a *App) router(extra []gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(extra...)
	r.Use(ginoauth.Middleware(a.Manager))
	a.Manager.Mount(r)
	api := r.Group("/api", ginoauth.RequireAuth(a.Manager))
	api.GET("/whoami", func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		c.JSON(http.StatusOK, gin.H{"did": u.DID, "handle": u.Handle, "oauthSessionID": u.OAuthSessionID()})
	})
	api.GET("/pds-session", a.withSession(func(c *gin.Context, sess oauthclient.Session) (any, error) {
		var out struct {
			DID    string `json:"did"`
			Handle string `json:"handle"`
		}
		err := xrpcGet(c, sess, "com.atproto.server.getSession", nil, &out)
		return out, err
	}))
	api.GET("/pds-session-typed", a.withSession(func(c *gin.Context, sess oauthclient.Session) (any, error) {
		var out struct {
			DID    string `json:"did"`
			Handle string `json:"handle"`
		}
		err := indigoclient.APIClient(sess).Get(c.Request.Context(), "com.atproto.server.getSession", nil, &out)
		return out, err
	}))
	api.POST("/post", a.withSession(func(c *gin.Context, sess oauthclient.Session) (any, error) {
		var out struct {
			URI string `json:"uri"`
			CID string `json:"cid"`
		}
		in := map[string]any{
			"repo": sess.DID(), "collection": "app.bsky.feed.post",
			"record": map[string]any{"$type": "app.bsky.feed.post", "text": c.PostForm("text"), "createdAt": time.Now().UTC().Format(time.RFC3339)},
		}
		err := indigoclient.APIClient(sess).Post(c.Request.Context(), "com.atproto.repo.createRecord", in, &out)
		return out, err
	}))
	api.GET("/record", a.withSession(func(c *gin.Context, sess oauthclient.Session) (any, error) {
		parts := strings.SplitN(strings.TrimPrefix(c.Query("uri"), "at://"), "/", 3)
		if len(parts) != 3 {
			return nil, errors.New("bad at:// uri")
		}
		var out map[string]any
		err := xrpcGet(c, sess, "com.atproto.repo.getRecord",
			url.Values{"repo": {parts[0]}, "collection": {parts[1]}, "rkey": {parts[2]}}, &out)
		return out, err
	}))
	api.POST("/refresh", a.withSession(func(c *gin.Context, sess oauthclient.Session) (any, error) {
		r, ok := sess.(oauthclient.Refresher)
		if !ok {
			return nil, errors.New("the OAuth session cannot refresh on demand")
		}
		return gin.H{"refreshed": true}, r.RefreshTokens(c.Request.Context())
	}))
	// A login with the options of StartOptions; the scopes come from the
	// test (an app takes them from its own code, never from a request).
	r.GET("/start", func(c *gin.Context) {
		authURL, err := a.Manager.StartOAuth(c, c.Query("handle"), ginoauth.StartOptions{
			ReturnTo: c.Query("redirect"), Server: c.Query("server"), Prompt: c.Query("prompt"), Scopes: c.QueryArray("scope"),
		})
		if err != nil {
			e := ginoauth.ErrorResponseFor(err)
			c.JSON(e.Status, gin.H{"error": e.Message, "code": e.Code})
			return
		}
		c.Redirect(http.StatusFound, authURL)
	})
	r.GET("/dashboard", func(c *gin.Context) {
		if u, ok := ginoauth.CurrentUser(c); ok {
			c.String(http.StatusOK, "hello "+u.Handle)
			return
		}
		c.String(http.StatusOK, "anonymous")
	})
	return r
}

// withSession runs fn with the user's ready OAuth session and answers JSON.
func (a *App) withSession(fn func(*gin.Context, oauthclient.Session) (any, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		sess, err := a.Manager.OAuthSession(c)
		if err != nil {
			c.JSON(statusOf(err, http.StatusInternalServerError), gin.H{"error": err.Error()})
			return
		}
		out, err := fn(c, sess)
		if err != nil {
			// A PDS call fails with the library's typed errors (a login
			// that ended: 401) or with anything else from the network (502).
			c.JSON(statusOf(err, http.StatusBadGateway), gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, out)
	}
}

// statusOf is the HTTP status of the library's typed errors, or def.
func statusOf(err error, def int) int {
	if r := ginoauth.ErrorResponseFor(err); r.Code != ginoauth.CodeInternal {
		return r.Status
	}
	return def
}

// xrpcGet calls an XRPC query on the session's PDS with the session's own
// Do, as an app without indigo's typed client would.
func xrpcGet(c *gin.Context, sess oauthclient.Session, nsid string, params url.Values, out any) error {
	u := strings.TrimRight(sess.HostURL(), "/") + "/xrpc/" + nsid
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(c.Request.Context(), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := sess.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("xrpc %s: HTTP %d", nsid, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// NewBrowser returns a browser (ginoauthtest's) with an empty cookie jar
// for the app, whose logins Options.Consent approves.
func (a *App) NewBrowser() *ginoauthtest.Browser {
	return ginoauthtest.NewBrowser(a.T, a.Server.URL, a.consent)
}

// WithCookie sends one request carrying exactly the session cookie value.
func (a *App) WithCookie(method, path, value string) ginoauthtest.Response {
	return a.NewBrowser().Do(method, path, nil, http.Header{"Cookie": {"sid=" + value}})
}

// ObservedClient is the real indigo adapter, counting how often the Manager
// hands it a callback, so tests can check the Manager's own protections
// independently of the adapter's.
type ObservedClient struct {
	*indigoclient.Client
	Callbacks atomic.Int64

	mu   sync.Mutex
	last *oauthclient.Grant

	// sharedOrigin, for an instance sharing another's client config, is
	// this instance's own origin (see Registration).
	sharedOrigin string
}

// Registration reports the client's registration. An instance that shares
// another's client config (Options.ClientConfig) reports its redirect URI
// on its own origin, same path: instances that in production share one
// public origin, BaseURL, listen here on ports of their own, and the test
// carries each callback to the instance it means.
func (o *ObservedClient) Registration() oauthclient.Registration {
	r := o.Client.Registration()
	if o.sharedOrigin == "" {
		return r
	}
	uris := make([]string, len(r.RedirectURIs))
	for i, ru := range r.RedirectURIs {
		uris[i] = ru
		if u, err := url.Parse(ru); err == nil {
			uris[i] = o.sharedOrigin + u.EscapedPath()
		}
	}
	r.RedirectURIs = uris
	return r
}

// Callback counts and delegates.
func (o *ObservedClient) Callback(ctx context.Context, params url.Values, ttl time.Duration) (*oauthclient.Grant, error) {
	o.Callbacks.Add(1)
	g, err := o.Client.Callback(ctx, params, ttl)
	if g != nil {
		o.mu.Lock()
		cp := *g
		o.last = &cp
		o.mu.Unlock()
	}
	return g, err
}

// Authenticate counts and delegates (an authentication-only callback).
func (o *ObservedClient) Authenticate(ctx context.Context, params url.Values) (*oauthclient.Grant, error) {
	o.Callbacks.Add(1)
	g, err := o.Client.Authenticate(ctx, params)
	if g != nil {
		o.mu.Lock()
		cp := *g
		o.last = &cp
		o.mu.Unlock()
	}
	return g, err
}

// LastGrant is a copy of the last grant the client returned, or nil.
func (o *ObservedClient) LastGrant() *oauthclient.Grant {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// Clock is a settable clock for the Manager.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// FaultyStorage passes through to a real Storage until told to fail: all
// of it while Down is set (a database outage as the library sees it), or
// chosen operations on chosen keys (see Fail).
type FaultyStorage struct {
	storage.Store
	Down atomic.Bool
	// SessionReads counts the reads (Get and GetStale) of session records
	// (keys "sess:..."), for tests that bound a request's storage reads.
	SessionReads atomic.Int64
	// SessionWrites counts the writes (Set and Swap) of session records,
	// for tests that bound how often sessions are written.
	SessionWrites atomic.Int64

	mu     sync.Mutex
	faults []*fault
}

// ErrDown is what FaultyStorage returns for an injected failure.
var ErrDown = errors.New("storage is down (injected fault)")

// Storage operations a fault can target.
const (
	OpGet    = "get"
	OpSet    = "set"
	OpDelete = "delete"
	OpTake   = "take"
	OpLock   = "lock"
	OpUnlock = "unlock"
	OpRenew  = "renew"
	OpIndex  = "index" // AddMember, RemoveMember and Members
	// OpAddMember is AddMember alone: background work (a refresh's
	// follow-up lists an account's sessions) must not take its fault.
	OpAddMember = "add-member"
	OpSwap      = "swap"
	OpIncr      = "incr"
)

type fault struct {
	op, prefix string
	skip       int // matching calls to let through first
	left       int // failures left; < 0 = until removed
}

// Fail makes the next n calls of op on keys starting with prefix fail with
// ErrDown (n < 0: every call until the returned func is called). Lock
// names count as keys.
func (f *FaultyStorage) Fail(op, prefix string, n int) (remove func()) {
	return f.FailAfter(op, prefix, 0, n)
}

// FailAfter is Fail after letting the next skip matching calls through:
// the fault hits a chosen step of a request that makes several such calls.
func (f *FaultyStorage) FailAfter(op, prefix string, skip, n int) (remove func()) {
	ft := &fault{op: op, prefix: prefix, skip: skip, left: n}
	f.mu.Lock()
	f.faults = append(f.faults, ft)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		ft.left = 0
	}
}

func (f *FaultyStorage) fails(op, key string) bool {
	if f.Down.Load() {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ft := range f.faults {
		if ft.op == op && strings.HasPrefix(key, ft.prefix) && ft.left != 0 {
			if ft.skip > 0 {
				ft.skip--
				continue
			}
			if ft.left > 0 {
				ft.left--
			}
			return true
		}
	}
	return false
}

// Get implements storage.Store.
func (f *FaultyStorage) Get(ctx context.Context, k string) ([]byte, error) {
	f.countRead(k)
	if f.fails(OpGet, k) {
		return nil, ErrDown
	}
	return f.Store.Get(ctx, k)
}

func (f *FaultyStorage) countRead(k string) {
	if strings.HasPrefix(k, "sess:") {
		f.SessionReads.Add(1)
	}
}

func (f *FaultyStorage) countWrite(k string) {
	if strings.HasPrefix(k, "sess:") {
		f.SessionWrites.Add(1)
	}
}

// Set implements storage.Store.
func (f *FaultyStorage) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	f.countWrite(k)
	if f.fails(OpSet, k) {
		return ErrDown
	}
	return f.Store.Set(ctx, k, v, ttl)
}

// Delete implements storage.Store.
func (f *FaultyStorage) Delete(ctx context.Context, k string) error {
	if f.fails(OpDelete, k) {
		return ErrDown
	}
	return f.Store.Delete(ctx, k)
}

// Take implements storage.Taker; the wrapped Storage must have it.
func (f *FaultyStorage) Take(ctx context.Context, k string) ([]byte, error) {
	if f.fails(OpTake, k) {
		return nil, ErrDown
	}
	return f.Store.(storage.Taker).Take(ctx, k)
}

// Lock implements storage.Locker; the wrapped Storage must have it. The
// Unlock it returns fails while an OpUnlock fault matches name.
func (f *FaultyStorage) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	if f.fails(OpLock, name) {
		return nil, ErrDown
	}
	unlock, err := f.Store.(storage.Locker).Lock(ctx, name, ttl)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if f.fails(OpUnlock, name) {
			return ErrDown
		}
		return unlock(ctx)
	}, nil
}

// AddMember implements storage.Indexer; the wrapped Storage must have it.
func (f *FaultyStorage) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if f.fails(OpIndex, set) || f.fails(OpAddMember, set) {
		return ErrDown
	}
	return f.Store.(storage.Indexer).AddMember(ctx, set, member, ttl)
}

// RemoveMember implements storage.Indexer.
func (f *FaultyStorage) RemoveMember(ctx context.Context, set, member string) error {
	if f.fails(OpIndex, set) {
		return ErrDown
	}
	return f.Store.(storage.Indexer).RemoveMember(ctx, set, member)
}

// Members implements storage.Indexer.
func (f *FaultyStorage) Members(ctx context.Context, set string) ([]string, error) {
	if f.fails(OpIndex, set) {
		return nil, ErrDown
	}
	return f.Store.(storage.Indexer).Members(ctx, set)
}

// GetStale implements storage.StaleReader (a plain Get when the wrapped
// Storage has none); failures are injected as for Get.
func (f *FaultyStorage) GetStale(ctx context.Context, k string) ([]byte, error) {
	f.countRead(k)
	if f.fails(OpGet, k) {
		return nil, ErrDown
	}
	return storage.GetStale(ctx, f.Store, k)
}

// MaxStaleness implements storage.StaleReader: the wrapped Storage's bound,
// 0 when it has no replica reads.
func (f *FaultyStorage) MaxStaleness() time.Duration {
	if r, ok := f.Store.(storage.StaleReader); ok {
		return r.MaxStaleness()
	}
	return 0
}

// faultyCounter and faultySwapper add storage.Counter and storage.Swapper
// to a FaultyStorage, which the Manager gets only when the wrapped Storage
// has them: a store without one must look without it (the Manager then
// counts rate limits in process, or does not extend sessions).
type (
	faultyCounter struct{ f *FaultyStorage }
	faultySwapper struct{ f *FaultyStorage }
	faultyRenewer struct{ f *FaultyStorage }
)

// LockRenewable implements storage.RenewableLocker; faults are injected as
// for Lock.
func (r faultyRenewer) LockRenewable(ctx context.Context, name string, ttl time.Duration) (string, storage.Unlock, error) {
	if r.f.fails(OpLock, name) {
		return "", nil, ErrDown
	}
	token, unlock, err := r.f.Store.(storage.RenewableLocker).LockRenewable(ctx, name, ttl)
	if err != nil {
		return "", nil, err
	}
	return token, func(ctx context.Context) error {
		if r.f.fails(OpUnlock, name) {
			return ErrDown
		}
		return unlock(ctx)
	}, nil
}

// Renew implements storage.RenewableLocker; it fails while an OpRenew
// fault matches name.
func (r faultyRenewer) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if r.f.fails(OpRenew, name) {
		return ErrDown
	}
	return r.f.Store.(storage.RenewableLocker).Renew(ctx, name, token, ttl)
}

// clientStorage is what the OAuth client is given: f, with renewable
// leases when the wrapped Storage has them.
func (f *FaultyStorage) clientStorage() storage.Store {
	if _, ok := f.Store.(storage.RenewableLocker); ok {
		return struct {
			*FaultyStorage
			faultyRenewer
		}{f, faultyRenewer{f}}
	}
	return f
}

// Incr implements storage.Counter.
func (c faultyCounter) Incr(ctx context.Context, k string, by int64, ttl time.Duration) (int64, error) {
	if c.f.fails(OpIncr, k) {
		return 0, ErrDown
	}
	return c.f.Store.(storage.Counter).Incr(ctx, k, by, ttl)
}

// Swap implements storage.Swapper.
func (s faultySwapper) Swap(ctx context.Context, k string, old, new []byte, ttl time.Duration) (bool, error) {
	s.f.countWrite(k)
	if s.f.fails(OpSwap, k) {
		return false, ErrDown
	}
	return s.f.Store.(storage.Swapper).Swap(ctx, k, old, new, ttl)
}

// managerStorage is what the Manager is given: f, with Incr, Swap and
// renewable leases when the wrapped Storage has them.
func (f *FaultyStorage) managerStorage() storage.Store {
	_, counts := f.Store.(storage.Counter)
	_, swaps := f.Store.(storage.Swapper)
	_, renews := f.Store.(storage.RenewableLocker)
	c, sw, r := faultyCounter{f}, faultySwapper{f}, faultyRenewer{f}
	switch {
	case counts && swaps && renews:
		return struct {
			*FaultyStorage
			faultyCounter
			faultySwapper
			faultyRenewer
		}{f, c, sw, r}
	case counts && swaps:
		return struct {
			*FaultyStorage
			faultyCounter
			faultySwapper
		}{f, c, sw}
	case counts && renews:
		return struct {
			*FaultyStorage
			faultyCounter
			faultyRenewer
		}{f, c, r}
	case swaps && renews:
		return struct {
			*FaultyStorage
			faultySwapper
			faultyRenewer
		}{f, sw, r}
	case counts:
		return struct {
			*FaultyStorage
			faultyCounter
		}{f, c}
	case swaps:
		return struct {
			*FaultyStorage
			faultySwapper
		}{f, sw}
	case renews:
		return struct {
			*FaultyStorage
			faultyRenewer
		}{f, r}
	}
	return f
}

// LogBuffer is a goroutine-safe io.Writer for capturing logs in tests.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// EditStoredOAuthSession rewrites the OAuth client's stored record of a
// session in place (keeping its TTL), as a fault a test injects: edit gets
// the record's "data" object (indigo's ClientSessionData as JSON).
func (a *App) EditStoredOAuthSession(did, sessionID string, edit func(data map[string]any)) {
	a.T.Helper()
	ctx := context.Background()
	key := "oauth:sess:" + did + ":" + sessionID
	raw, err := a.Store.Store.Get(ctx, key)
	if err != nil {
		a.T.Fatalf("reading %s: %v", key, err)
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		a.T.Fatal(err)
	}
	data, _ := rec["data"].(map[string]any)
	edit(data)
	expires, err := time.Parse(time.RFC3339Nano, rec["expires_at"].(string))
	if err != nil {
		a.T.Fatal(err)
	}
	raw, _ = json.Marshal(rec)
	if err := a.Store.Store.Set(ctx, key, raw, time.Until(expires)); err != nil {
		a.T.Fatal(err)
	}
}
