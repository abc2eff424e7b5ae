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
	"strings"
	"time"

	"github.com/gin-contrib/sessions"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Manager runs the login flow and the sessions of one app. Build it once with
// New and share it: it is safe for concurrent use.
type Manager struct {
	cfg     Config
	client  OAuthClient
	store   Storage
	cookies *CookieStore
	log     *slog.Logger

	sessionCookie sessions.Options
	flowCookie    sessions.Options
	flowCookieNm  string
	origin        string // BaseURL's scheme://host[:port], as browsers send Origin

	now func() time.Time

	bg      background // work that outlives a request, stopped by Close
	hooks   hooks
	metrics Metrics
	refKey  []byte // for opaque session references
	cache   *recordCache
	seenTracker
}

// New validates cfg, fills in defaults and returns a Manager. Every problem
// is reported as a *ConfigurationError.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	secure, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	old := make([][]byte, len(cfg.OldCookieSecrets))
	for i, s := range cfg.OldCookieSecrets {
		old[i] = []byte(s)
	}
	cookies, err := NewCookieStore([]byte(cfg.CookieSecret), old...)
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
		flowCookieNm:  cfg.CookieName + "_flow",
		origin:        strings.TrimRight(cfg.BaseURL, "/"),
		metrics:       cfg.Metrics,
		cache:         newRecordCache(cfg.SessionCache),
		seenTracker:   seenTracker{seen: map[string]time.Time{}},
		now:           cfg.Now,
	}
	m.sessionCookie.MaxAge = int(cfg.SessionTTL / time.Second)
	m.flowCookie.MaxAge = int(cfg.FlowTTL / time.Second)
	if m.metrics == nil {
		m.metrics = nopMetrics{}
	}
	m.hooks = hooks{fn: cfg.OnEvent, log: m.log.Warn}
	if m.refKey, err = hkdf.Key(sha256.New, []byte(cfg.CookieSecret), nil, "ginoauth session ref v1", 32); err != nil {
		return nil, err
	}
	if _, ok := cfg.Storage.(storage.Taker); !ok {
		m.log.Warn("storage has no atomic Take: one-time records are single-use within this process only; use a store from the stores packages for several instances")
	}
	return m, nil
}

// Close stops the Manager's background work and waits for it to end. It
// does not close the OAuth client or the Storage, which the app owns. Close
// is safe to call more than once; the Manager must not be used afterwards.
func (m *Manager) Close() error {
	m.bg.close()
	return nil
}

// CookieStore returns the gin-contrib/sessions store the Manager seals its
// cookies with. Apps may use it for their own small string-valued sessions
// (with a different cookie name).
func (m *Manager) CookieStore() *CookieStore { return m.cookies }

// Config returns the Manager's configuration with defaults filled in and
// the cookie secrets blanked, so that printing it cannot leak them.
func (m *Manager) Config() Config {
	cfg := m.cfg
	cfg.CookieSecret, cfg.OldCookieSecrets = "", nil
	return cfg
}

// randomToken returns n random bytes, base64url encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// op bounds one storage operation by Config.StorageTimeout.
func (m *Manager) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.cfg.StorageTimeout)
}

// getJSON loads key into v. It returns ErrNotFound or a *StorageError.
func (m *Manager) getJSON(ctx context.Context, key string, v any) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	raw, err := m.store.Get(ctx, key)
	if err != nil {
		return m.storageFailed("get", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		// A record we cannot read is as good as absent, but say so.
		m.log.Warn("unreadable record in storage; ignoring it", "key_prefix", keyPrefix(key), "err", err)
		return ErrNotFound
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
	return m.storageFailed("set", m.store.Set(ctx, key, raw, ttl))
}

func (m *Manager) delete(ctx context.Context, key string) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	return m.storageFailed("delete", m.store.Delete(ctx, key))
}

// takeJSON consumes key (read and delete in one step) into v.
func (m *Manager) takeJSON(ctx context.Context, key string, v any) error {
	ctx, cancel := m.op(ctx)
	defer cancel()
	raw, err := storage.Take(ctx, m.store, key)
	if err != nil {
		return m.storageFailed("take", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		m.log.Warn("unreadable one-time record in storage; ignoring it", "key_prefix", keyPrefix(key), "err", err)
		return ErrNotFound
	}
	return nil
}

// keyPrefix is the non-secret part of a storage key, for logs.
func keyPrefix(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == ':' {
			return key[:i]
		}
	}
	return "?"
}

// isStorageErr reports whether err is a storage failure (503).
func isStorageErr(err error) bool {
	var se *StorageError
	return errors.As(err, &se)
}
