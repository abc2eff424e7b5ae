package ginoauth

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-contrib/sessions"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Manager runs the login flow and the sessions of one app. Build it once
// with New and share it: it is safe for concurrent use. Put
// Middleware(mgr) on the router, mount the prebuilt routes with Mount, and
// guard routes with RequireAuth(mgr) and RequireScopes(mgr, ...).
type Manager struct {
	cfg      Config
	client   oauthclient.Client
	store    storage.Store
	sessions *deviceSessions // the session core
	cookies  *CookieStore
	log      *slog.Logger

	sessionCookie sessions.Options
	flowCookie    sessions.Options
	flowCookieNm  string
	origin        string // BaseURL's scheme://host[:port], as browsers send Origin
	originCheck   *http.CrossOriginProtection

	now func() time.Time

	bg      background // work that outlives a request, stopped by Close
	hooks   hooks
	metrics Metrics
	refKey  []byte // for opaque session references

	// Keep-alive without a storage.Locker: the grants this process handles.
	keepAliveMu   sync.Mutex
	keepAliveBusy map[string]bool

	limits *rateLimiter // login rate limits (rate_limit.go); nil when disabled

	liveness livenessState // the liveness check's claims (liveness.go)
}

// New validates cfg, fills in defaults and returns a Manager. Every problem
// is reported as a *ConfigurationError.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	secure, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	regWarning, err := registrationProblems(cfg)
	if err != nil {
		return nil, err
	}
	old := make([][]byte, len(cfg.OldCookieSecrets))
	for i, s := range cfg.OldCookieSecrets {
		old[i] = []byte(s)
	}
	cookies, err := newCookieStore([]byte(cfg.CookieSecret), old...)
	if err != nil {
		return nil, err
	}
	base := sessions.Options{Path: "/", Domain: cfg.CookieDomain, Secure: secure, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	cookies.Options(base)
	cookies.now = cfg.Now

	m := &Manager{
		cfg:           cfg,
		client:        cfg.OAuthClient,
		store:         cfg.Storage,
		cookies:       cookies,
		log:           cfg.Logger,
		sessionCookie: base,
		flowCookie:    base,
		flowCookieNm:  flowCookieName(cfg.CookieName, secure),
		origin:        cfg.origin(),
		metrics:       cfg.Metrics,
		now:           cfg.Now,
	}
	if m.originCheck, err = newOriginCheck(m.origin, cfg.allowedOrigins()); err != nil {
		return nil, &ConfigurationError{Field: "AllowedOrigins", Reason: err.Error()}
	}
	m.sessionCookie.MaxAge = int(fallbackMaxAge / time.Second) // each cookie gets its session's
	m.flowCookie.MaxAge = int(cfg.FlowTTL / time.Second)
	// The flow cookie is read only by the callback, on BaseURL's host: it
	// never needs CookieDomain, and without it (and with __Host- on https)
	// no sibling host can plant one to bind a victim's browser to the
	// attacker's login.
	m.flowCookie.Domain = ""
	for _, uri := range cfg.Mobile.RedirectURIs {
		if u, err := url.Parse(uri); err == nil && u.Scheme != "https" && u.Scheme != "http" {
			m.log.Warn("a native app redirect URI with a private-use scheme: any app on the device can claim it and receive the codes of logins an attacker started (see SECURITY.md); prefer an https link the OS verifies", "redirect_uri", uri)
		}
	}
	if regWarning != "" {
		m.log.Warn(regWarning)
	}
	if cfg.CookieDomain != "" {
		m.log.Warn("CookieDomain shares the session cookie with every host under it: any of them can plant a session cookie of its own (see SECURITY.md); use it only if all are yours", "domain", cfg.CookieDomain)
	}
	if m.metrics == nil {
		m.metrics = nopMetrics{}
	}
	m.hooks = hooks{fn: cfg.OnEvent, log: m.log.Warn}
	if m.limits, err = newRateLimiter(cfg, m.metrics, m.log); err != nil {
		return nil, err
	}
	if m.refKey, err = hkdf.Key(sha256.New, []byte(cfg.CookieSecret), nil, "ginoauth session ref v1", 32); err != nil {
		return nil, err
	}
	ix, _ := cfg.Storage.(storage.Indexer)
	swapper, _ := cfg.Storage.(storage.Swapper)
	limiter, _ := cfg.OAuthClient.(oauthclient.GrantLimiter)
	m.sessions = &deviceSessions{
		store: cfg.Storage, ix: ix, timeout: cfg.StorageTimeout, now: cfg.Now, log: m.log,
		metrics: m.metrics, bg: &m.bg, resolver: cfg.OAuthClient,
		cache:         newRecordCache(cfg.SessionCacheTTL, cfg.SessionCacheMaxEntries),
		lifetime:      map[string]time.Duration{kindWeb: window(cfg.SessionTTL), kindMobile: window(cfg.Mobile.SessionTTL)},
		maxAge:        cfg.MaxSessionAge,
		swapper:       swapper,
		limiter:       limiter,
		background:    cfg.BackgroundAccess,
		staleness:     staleness(cfg.Storage),
		checkDeadline: sharedDeadline{timeout: cfg.StorageTimeout},
		revoke:        m.revoke,
		emit:          m.emit,
		successorHash: m.successorHash,
		lockLease:     renewedLockLease,
	}
	if _, ok := cfg.OAuthClient.(oauthclient.IdentityChecker); ok && ix != nil && cfg.IdentityCheckInterval > 0 {
		m.sessions.identity = identityChecks{every: cfg.IdentityCheckInterval, start: m.startIdentityCheck,
			afterAnswer: m.checkAfterAnswer, afterRefused: m.checkAfterRefused}
	}
	if swapper == nil {
		m.log.Warn("storage has no storage.Swapper: sessions are not extended by use; SessionTTL counts from the login")
	}
	if n, ok := cfg.OAuthClient.(oauthclient.RefreshNotifier); ok {
		n.OnRefresh(m.onRefresh)
	}
	if cfg.KeepAlive {
		if ix == nil || limiter == nil {
			return nil, &ConfigurationError{Field: "KeepAlive", Reason: "needs a Storage with storage.Indexer and an OAuth client with oauthclient.GrantLimiter"}
		}
		m.every(keepAliveSweepEvery, func() { m.sweepKeepAlive(context.Background()) })
	}
	if _, ok := cfg.Storage.(storage.Taker); !ok {
		m.log.Warn("storage has no atomic Take: one-time records are single-use within this process only; use a store from the stores packages for several instances")
	}
	if _, ok := cfg.Storage.(storage.Locker); !ok {
		m.log.Warn("storage has no Locker: a native app's token rotations and a session's end are serialised within this process only; use a store from the stores packages for several instances")
	}
	m.startRetiredKeySweeps() // key_retirement.go
	m.startLivenessChecks()   // liveness.go
	return m, nil
}

// flowCookieName is the flow cookie's name: the session cookie's with
// "_flow", always with the __Host- prefix on https (the flow cookie is
// never shared with other hosts, whatever CookieDomain says).
func flowCookieName(cookieName string, secure bool) string {
	if !secure {
		return cookieName + "_flow"
	}
	base := strings.TrimPrefix(strings.TrimPrefix(cookieName, "__Host-"), "__Secure-")
	return "__Host-" + base + "_flow"
}

// Close stops the Manager's background work and waits for it to end. It
// does not close the OAuth client or the Storage, which the app owns. Close
// is safe to call more than once; the Manager must not be used afterwards.
func (m *Manager) Close() error {
	m.bg.close()
	return nil
}

// CookieStore returns the gin-contrib/sessions store the Manager seals its
// cookies with, for the app's own small sessions under another cookie name:
//
//	r.Use(sessions.Sessions("prefs", mgr.CookieStore()))
func (m *Manager) CookieStore() *CookieStore { return m.cookies }

// staleness is how stale a session check's read may be on st: its
// storage.StaleReader bound, or 0.
func staleness(st storage.Store) time.Duration {
	if r, ok := st.(storage.StaleReader); ok {
		return r.MaxStaleness()
	}
	return 0
}

// onRefresh follows a token refresh the OAuth client made: the grant's
// device sessions take its new limits and scopes, and its keep-alive is
// scheduled anew. It runs off the refresh's path.
func (m *Manager) onRefresh(r oauthclient.Refresh) {
	m.bg.run(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*m.cfg.StorageTimeout)
		defer cancel()
		hash, rec := m.sessions.followGrant(ctx, r, m.hooks.fn != nil)
		m.scheduleKeepAlive(ctx, r.DID, r.SessionID, r.RefreshBy, r.EndsAt)
		m.emitRefresh(r, &rec, hash)
		if m.sessions.identity.every > 0 {
			m.startIdentityCheck(r.DID)
		}
	})
}

// emitRefresh reports a refresh (and the scopes it changed) to
// Config.OnEvent: scope strings, the account and the device session's
// reference, never a token.
func (m *Manager) emitRefresh(r oauthclient.Refresh, rec *sessionRecord, hash string) {
	if m.hooks.fn == nil {
		return
	}
	e := Event{Type: EventTokensRefreshed, DID: r.DID, Handle: rec.Handle, Kind: rec.kind(), Time: m.now(),
		Scopes: slices.Clone(r.Scopes), PreviousScopes: slices.Clone(r.PreviousScopes)}
	if hash != "" {
		e.Session = m.ref(hash)
	} else {
		e.Kind = ""
	}
	m.hooks.emit(m, e)
	if r.PreviousScopes != nil && len(r.Scopes) > 0 && !sameScopes(r.Scopes, r.PreviousScopes) {
		e.Type = EventScopesChanged
		e.Scopes, e.PreviousScopes = slices.Clone(r.Scopes), slices.Clone(r.PreviousScopes)
		m.hooks.emit(m, e)
	}
}

// sameScopes compares two scope sets, whatever their order.
func sameScopes(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// emit sends a lifecycle event to Config.OnEvent.
func (m *Manager) emit(typ EventType, reason EndReason, rec *sessionRecord, hash string) {
	e := Event{Type: typ, Reason: reason, DID: rec.DID, Handle: rec.Handle, Kind: rec.kind(), Time: m.now()}
	if hash != "" {
		e.Session = m.ref(hash)
	} else {
		e.Kind = "" // a grant with no device session
	}
	m.hooks.emit(m, e)
}

// randomToken returns n random bytes, base64url encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// storageFailed wraps a storage failure as a *storage.Error and counts it.
func storageFailed(metrics Metrics, op string, err error) error {
	err = storage.Wrap(op, err)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		metrics.StorageFailed(op)
	}
	return err
}

// The Manager's own one-time records (login flows, native apps' codes) are
// small JSON values; these helpers bound each storage operation by
// Config.StorageTimeout and report failures as *storage.Error.

func (m *Manager) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.StorageTimeout)
}

// getJSON loads key into v: storage.ErrNotFound, a *storage.Error, or nil.
func (m *Manager) getJSON(ctx context.Context, key string, v any) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	raw, err := m.store.Get(ctx, key)
	if err != nil {
		return storageFailed(m.metrics, "get", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		// A record we cannot read is as good as absent, but say so.
		m.log.Warn("unreadable record in storage; ignoring it", "key_prefix", keyPrefix(key), "err", err)
		return storage.ErrNotFound
	}
	return nil
}

func (m *Manager) setJSON(ctx context.Context, key string, v any, ttl time.Duration) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := m.op(ctx)
	defer cancel()
	return storageFailed(m.metrics, "set", m.store.Set(ctx, key, raw, ttl))
}

// storeDelete deletes key.
func (m *Manager) storeDelete(ctx context.Context, key string) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	return storageFailed(m.metrics, "delete", m.store.Delete(ctx, key))
}

// takeJSON consumes key (read and delete in one step) into v.
func (m *Manager) takeJSON(ctx context.Context, key string, v any) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	raw, err := storage.Take(ctx, m.store, key)
	if err != nil {
		return storageFailed(m.metrics, "take", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		m.log.Warn("unreadable one-time record in storage; ignoring it", "key_prefix", keyPrefix(key), "err", err)
		return storage.ErrNotFound
	}
	return nil
}

// keyPrefix is the non-secret part of a storage key, for logs.
func keyPrefix(key string) string {
	if i := strings.IndexByte(key, ':'); i >= 0 {
		return key[:i]
	}
	return "?"
}
