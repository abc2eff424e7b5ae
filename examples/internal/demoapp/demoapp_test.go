package demoapp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestLoadConfigDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	cfg, err := demoapp.LoadConfig(env(map[string]string{"DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != demoapp.DefaultAddr || cfg.Network != demoapp.NetworkLocal || cfg.PublicURL != "" || cfg.SessionTTL != 0 {
		t.Fatalf("defaults: %+v", cfg)
	}
	if strings.Join(cfg.Scopes, " ") != demoapp.DefaultScopes || cfg.LogLevel != slog.LevelInfo {
		t.Fatalf("defaults: scopes %v, level %v", cfg.Scopes, cfg.LogLevel)
	}
	if !cfg.GeneratedSecret || len(cfg.CookieSecret) < 32 {
		t.Fatalf("want a generated secret of at least %d bytes, got %d", 32, len(cfg.CookieSecret))
	}
	for name, mode := range map[string]os.FileMode{".": 0o700, "cookie-secret": 0o600, "sessions.db": 0o600, ".gitignore": 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	if gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore")); !strings.Contains(string(gi), "\n*\n") {
		t.Errorf("the data dir's .gitignore must ignore everything: %q", gi)
	}

	// The secret is kept: a restart (or a second instance) uses the same one.
	again, err := demoapp.LoadConfig(env(map[string]string{"DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if again.CookieSecret != cfg.CookieSecret {
		t.Fatal("the generated secret changed between runs")
	}

	var warn bytes.Buffer
	cfg.WarnIfGeneratedSecret(&warn)
	if !strings.Contains(warn.String(), "WARNING: COOKIE_SECRET is not set") || strings.Contains(warn.String(), cfg.CookieSecret) {
		t.Fatalf("warning: %q", warn.String())
	}

	// With COOKIE_SECRET set nothing is generated and nothing is printed.
	secret := strings.Repeat("s", 40)
	set, err := demoapp.LoadConfig(env(map[string]string{"DATA_DIR": t.TempDir(), "COOKIE_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	warn.Reset()
	set.WarnIfGeneratedSecret(&warn)
	if set.CookieSecret != secret || set.GeneratedSecret || warn.Len() != 0 {
		t.Fatalf("COOKIE_SECRET ignored: %+v %q", set, warn.String())
	}
}

func TestBaseURL(t *testing.T) {
	cfg := demoapp.Config{}
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9001":      "http://127.0.0.1:9001",
		"[::1]:9002":     "http://[::1]:9002",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.BaseURL(a); got != want {
			t.Errorf("BaseURL(%s) = %s, want %s", addr, got, want)
		}
	}
	cfg.PublicURL = "https://myapp.example"
	if got := cfg.BaseURL(&net.TCPAddr{Port: 8080}); got != cfg.PublicURL {
		t.Errorf("with PUBLIC_URL: %s", got)
	}
}

func TestLoadConfigRefusesAReadableSecretFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cookie-secret"), []byte(strings.Repeat("x", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := demoapp.LoadConfig(env(map[string]string{"DATA_DIR": dir}))
	var ce *demoapp.ConfigError
	if !errors.As(err, &ce) || ce.Var != "COOKIE_SECRET" || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("want a COOKIE_SECRET error about the file mode, got %v", err)
	}
}

func TestLoadConfigValues(t *testing.T) {
	key, err := demoapp.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, cfg demoapp.Config)
	}{
		{"days", map[string]string{"SESSION_TTL": "30d"}, func(t *testing.T, cfg demoapp.Config) {
			if cfg.SessionTTL != 30*24*time.Hour {
				t.Fatal(cfg.SessionTTL)
			}
		}},
		{"duration", map[string]string{"SESSION_TTL": "90m", "LOG_LEVEL": "DEBUG"}, func(t *testing.T, cfg demoapp.Config) {
			if cfg.SessionTTL != 90*time.Minute || cfg.LogLevel != slog.LevelDebug {
				t.Fatal(cfg.SessionTTL, cfg.LogLevel)
			}
		}},
		{"bluesky dev", map[string]string{"ATPROTO_NETWORK": "Bluesky"}, func(t *testing.T, cfg demoapp.Config) {
			if cfg.Network != demoapp.NetworkBluesky || cfg.PublicURL != "" {
				t.Fatal(cfg.Network, cfg.PublicURL)
			}
		}},
		{"public", map[string]string{"PUBLIC_URL": "https://myapp.example/"}, func(t *testing.T, cfg demoapp.Config) {
			if cfg.Network != demoapp.NetworkBluesky || cfg.PublicURL != "https://myapp.example" || cfg.ClientKey != nil {
				t.Fatal(cfg.Network, cfg.PublicURL)
			}
		}},
		{"confidential", map[string]string{"PUBLIC_URL": "https://myapp.example", "CLIENT_SECRET_KEY": key, "CLIENT_KEY_ID": "k1"}, func(t *testing.T, cfg demoapp.Config) {
			if cfg.ClientKey == nil || cfg.ClientKeyID != "k1" {
				t.Fatal("client key not loaded")
			}
		}},
		{"scopes", map[string]string{"OAUTH_SCOPES": "atproto  repo:com.example.ginoauth.note"}, func(t *testing.T, cfg demoapp.Config) {
			if strings.Join(cfg.Scopes, "|") != "atproto|repo:com.example.ginoauth.note" {
				t.Fatal(cfg.Scopes)
			}
		}},
		{"native apps", map[string]string{"MOBILE_REDIRECT_URIS": " http://127.0.0.1/native/callback\tcom.example.app:/oauth/callback "}, func(t *testing.T, cfg demoapp.Config) {
			if strings.Join(cfg.MobileRedirectURIs, "|") != "http://127.0.0.1/native/callback|com.example.app:/oauth/callback" {
				t.Fatal(cfg.MobileRedirectURIs)
			}
		}},
		{"no native apps", map[string]string{}, func(t *testing.T, cfg demoapp.Config) {
			if len(cfg.MobileRedirectURIs) != 0 {
				t.Fatal(cfg.MobileRedirectURIs)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["DATA_DIR"] = t.TempDir()
			cfg, err := demoapp.LoadConfig(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	key, _ := demoapp.NewClientKey()
	k256, err := atcrypto.GeneratePrivateKeyK256()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env     map[string]string
		wantVar string
	}{
		{map[string]string{"ADDR": "8080"}, "ADDR"},
		{map[string]string{"LOCAL_PDS_ADDR": "nope"}, "LOCAL_PDS_ADDR"},
		{map[string]string{"COOKIE_SECRET": "short"}, "COOKIE_SECRET"},
		{map[string]string{"SESSION_TTL": "30s"}, "SESSION_TTL"},
		{map[string]string{"SESSION_TTL": "-1d"}, "SESSION_TTL"},
		{map[string]string{"SESSION_TTL": "soon"}, "SESSION_TTL"},
		{map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL"},
		{map[string]string{"ATPROTO_NETWORK": "fediverse"}, "ATPROTO_NETWORK"},
		{map[string]string{"OAUTH_SCOPES": "transition:generic"}, "OAUTH_SCOPES"},
		{map[string]string{"PUBLIC_URL": "http://myapp.example"}, "PUBLIC_URL"},
		{map[string]string{"PUBLIC_URL": "https://myapp.example/app"}, "PUBLIC_URL"},
		{map[string]string{"PUBLIC_URL": "myapp.example"}, "PUBLIC_URL"},
		{map[string]string{"PUBLIC_URL": "https://myapp.example", "ATPROTO_NETWORK": "local"}, "PUBLIC_URL"},
		{map[string]string{"CLIENT_SECRET_KEY": key, "CLIENT_KEY_ID": "k1"}, "CLIENT_SECRET_KEY"},
		{map[string]string{"PUBLIC_URL": "https://myapp.example", "CLIENT_SECRET_KEY": key}, "CLIENT_KEY_ID"},
		{map[string]string{"PUBLIC_URL": "https://myapp.example", "CLIENT_KEY_ID": "k1"}, "CLIENT_KEY_ID"},
		{map[string]string{"PUBLIC_URL": "https://myapp.example", "CLIENT_SECRET_KEY": "not-a-key", "CLIENT_KEY_ID": "k1"}, "CLIENT_SECRET_KEY"},
		// A valid multibase key of the wrong curve (secp256k1).
		{map[string]string{"PUBLIC_URL": "https://myapp.example", "CLIENT_SECRET_KEY": k256.Multibase(), "CLIENT_KEY_ID": "k1"}, "CLIENT_SECRET_KEY"},
	}
	for _, tc := range cases {
		tc.env["DATA_DIR"] = t.TempDir()
		_, err := demoapp.LoadConfig(env(tc.env))
		var ce *demoapp.ConfigError
		if !errors.As(err, &ce) || ce.Var != tc.wantVar {
			t.Errorf("%v: want an error about %s, got %v", tc.env, tc.wantVar, err)
			continue
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("an error message repeats the private key: %v", err)
		}
	}
}

// The client metadata a public or confidential client serves, which the
// authorization server fetches at the client_id URL.
func TestPublicAndConfidentialClientMetadata(t *testing.T) {
	key, _ := demoapp.NewClientKey()
	for _, confidential := range []bool{false, true} {
		e := map[string]string{"DATA_DIR": t.TempDir(), "PUBLIC_URL": "https://myapp.example"}
		if confidential {
			e["CLIENT_SECRET_KEY"], e["CLIENT_KEY_ID"] = key, "key-1"
		}
		cfg, err := demoapp.LoadConfig(env(e))
		if err != nil {
			t.Fatal(err)
		}
		network, err := demoapp.StartNetwork(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if network.IsLocal() {
			t.Fatal("PUBLIC_URL must use the real network")
		}
		base := cfg.BaseURL(&net.TCPAddr{Port: 8080})
		cc, err := network.ClientConfig(base)
		if err != nil {
			t.Fatal(err)
		}
		client := indigoclient.New(cc, ginoauthStore(t), network.ClientOptions(nil))
		mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: ginoauthStore(t), CookieSecret: cfg.CookieSecret, BaseURL: base})
		if err != nil {
			t.Fatal(err)
		}
		r := demoapp.NewEngine()
		mgr.Mount(r)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth-client-metadata.json", nil))
		var md struct {
			ClientID     string   `json:"client_id"`
			ClientName   string   `json:"client_name"`
			RedirectURIs []string `json:"redirect_uris"`
			AuthMethod   string   `json:"token_endpoint_auth_method"`
			JWKS         *struct {
				Keys []map[string]any `json:"keys"`
			} `json:"jwks"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if md.ClientID != "https://myapp.example/oauth-client-metadata.json" || md.ClientName == "" ||
			len(md.RedirectURIs) != 1 || md.RedirectURIs[0] != "https://myapp.example/oauth/callback" {
			t.Fatalf("metadata: %s", rec.Body)
		}
		switch {
		case !confidential && md.AuthMethod != "none":
			t.Fatalf("public client: %s", rec.Body)
		case confidential && (md.AuthMethod != "private_key_jwt" || md.JWKS == nil || len(md.JWKS.Keys) != 1 || md.JWKS.Keys[0]["kid"] != "key-1"):
			t.Fatalf("confidential client: %s", rec.Body)
		case confidential && md.JWKS.Keys[0]["d"] != nil:
			t.Fatal("the private key is in the public metadata")
		}
	}
}

// testApp is the example's wiring, as in examples/basic, on a SQLite store
// the test can break, with the logs kept for inspection.
type testApp struct {
	URL     string
	Manager *ginoauth.Manager
	Store   *gormstore.Store
	Network *demoapp.Network
	Config  demoapp.Config
	logs    *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestApp is the app as examples/basic wires it.
func newTestApp(t *testing.T) *testApp {
	t.Helper()
	return newTestAppWith(t, func(*demoapp.PageOptions) {})
}

// newTestAppWith is newTestApp with page options of the test's choosing.
func newTestAppWith(t *testing.T, opt func(*demoapp.PageOptions)) *testApp {
	t.Helper()
	cfg, err := demoapp.LoadConfig(env(map[string]string{"DATA_DIR": t.TempDir(), "LOG_LEVEL": "debug"}))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := cfg.Logger(logs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := cfg.BaseURL(ln.Addr())
	store, err := sqlitestore.Open(cfg.SQLitePath, sqlitestore.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	network, err := demoapp.StartNetwork(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(network.Close)
	cc, err := network.ClientConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	pageOpts := demoapp.PageOptions{BaseURL: base, Network: network, Logger: log}
	opt(&pageOpts)
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  indigoclient.New(cc, store, network.ClientOptions(log)),
		Storage:      store,
		CookieSecret: cfg.CookieSecret,
		BaseURL:      base,
		LocalDomains: network.LocalDomains(),
		Logger:       log,
		ErrorHandler: demoapp.ErrorPages(pageOpts), // HTML pages for the library's failures
	})
	if err != nil {
		t.Fatal(err)
	}
	pages := demoapp.NewPages(mgr, pageOpts)
	r := demoapp.NewEngine()
	r.Use(pages.Middleware()...)
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	pages.Mount(r)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: r}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &testApp{URL: base, Manager: mgr, Store: store, Network: network, Config: cfg, logs: logs}
}

// When the session store fails, a logged-in browser gets a 503 page (not
// the start page: that would look like a logout), and everything works
// again once the store is back.
func TestStorageDownShowsA503Page(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	if p := b.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login: %.500s", p.Body)
	}
	// Break the real store: its connection pool is closed under the app.
	if err := a.Store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*demotest.Page{b.Get("/"), b.Post("/pds/session", url.Values{}), b.Post("/logout", url.Values{})} {
		if p.Status != http.StatusServiceUnavailable || !p.Contains("session store is unavailable") || !strings.Contains(p.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s with storage down: want a 503 page, got %d %s: %.300s", p.URL, p.Status, p.Header.Get("Content-Type"), p.Body)
		}
		if p.Header.Get("Retry-After") == "" {
			t.Errorf("%s: a 503 should say when to retry", p.URL)
		}
	}
	if b.Cookie("sid") == nil {
		t.Error("an outage must not clear the session cookie")
	}
	// A visitor without a session still sees the start page, and a login
	// attempt gets a 503 on the start page.
	anon := demotest.NewBrowser(t, a.URL)
	if p := anon.Get("/"); p.Status != http.StatusOK {
		t.Errorf("anonymous start page during an outage: %d", p.Status)
	}
	if p := anon.Post("/login", url.Values{"handle": {"alice.test"}}); p.Status != http.StatusServiceUnavailable || !p.Contains("session store is unavailable") {
		t.Errorf("login during an outage: want 503 with a message, got %d: %.300s", p.Status, p.Body)
	}
	if strings.Contains(a.logs.String(), "panic") {
		t.Fatalf("a handler panicked:\n%s", a.logs.String())
	}
}

// Logs, even at debug level, never hold tokens, codes, DPoP keys, the
// cookie secret or session ids.
func TestLogsHoldNoSecrets(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	b.Login("alice.test", true)
	sid := b.Cookie("sid")
	if sid == nil {
		t.Fatal("no session")
	}
	b.Post("/pds/session", url.Values{})
	a.Network.Local().ExpireAccessTokens() // make the next call refresh
	if p := b.Follow(b.Post("/pds/note", url.Values{"text": {"after a refresh"}})); p.Status != http.StatusOK || !p.Contains("Note saved") {
		t.Fatalf("call after token expiry: %d %.500s", p.Status, p.Body)
	}
	sessions := a.Network.Local().Sessions("alice.test")
	if len(sessions) != 1 || sessions[0].Refreshes != 1 {
		t.Fatalf("want one OAuth session refreshed once, got %+v", sessions)
	}
	b.Post("/logout", url.Values{})

	logs := a.logs.String()
	// The raw session id inside the sealed cookie.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(sid)
	opened, err := a.Manager.CookieStore().Get(req, "sid")
	if err != nil {
		t.Fatal(err)
	}
	rawSID, _ := opened.Values["sid"].(string)
	secrets := map[string]string{"session cookie": sid.Value, "raw session id": rawSID, "cookie secret": a.Config.CookieSecret}
	for _, s := range a.Network.Local().Sessions("") {
		secrets["access token"] = s.AccessToken
		secrets["refresh token"] = s.RefreshToken
	}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("no %s to look for", what)
		}
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain the %s", what)
		}
	}
	for _, word := range []string{"code=", "state=", "\"d\":", "Authorization:", "DPoP ey"} {
		if strings.Contains(logs, word) {
			t.Errorf("the logs contain %q:\n%s", word, logs)
		}
	}
	if !strings.Contains(logs, "route=/oauth/callback") {
		t.Errorf("the request log should name the callback route:\n%s", logs)
	}
}

// A loopback app opened as "localhost" sends the browser to 127.0.0.1,
// where the OAuth callback and its cookie will be.
func TestCanonicalHostRedirect(t *testing.T) {
	a := newTestApp(t)
	u, _ := url.Parse(a.URL)
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/?x=1", nil)
	req.Host = "localhost:" + u.Port()
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != a.URL+"/?x=1" {
		t.Fatalf("want 302 to %s/?x=1, got %d %q", a.URL, resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestNotLoggedInPDSCall(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	p := b.Post("/pds/session", url.Values{})
	if p.Status != http.StatusUnauthorized || !p.Contains("Please log in again") || !p.Contains(`id="handle"`) {
		t.Fatalf("PDS call without a login: want 401 and the start page, got %d: %.300s", p.Status, p.Body)
	}
	// An oversized form is refused, not read.
	big := b.Post("/pds/note", url.Values{"text": {strings.Repeat("x", 64<<10)}})
	if big.Status < 400 || big.Status >= 500 {
		t.Fatalf("oversized form: want a 4xx, got %d", big.Status)
	}
}

// Revoking the app's access at the authorization server (as a user can do
// from their account settings) gives a clear message, not a crash, and
// logging in again works.
func TestRevokedAtTheServer(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	b.Login("alice.test", true)
	if n := a.Network.Local().RevokeAll("alice.test"); n != 1 {
		t.Fatalf("revoked %d sessions", n)
	}
	// The refused refresh ends the login: the page after the redirect is
	// the start page, saying why.
	p := b.Follow(b.Post("/pds/session", url.Values{}))
	if !p.Contains("no longer accepts this login") || !p.Contains(`id="handle"`) {
		t.Fatalf("call after revocation: want the start page with advice, got %d: %.800s", p.Status, p.Body)
	}
	b.Post("/logout", url.Values{})
	if p := b.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login after revocation: %.300s", p.Body)
	}
}

func ginoauthStore(t *testing.T) storage.Store {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// When the OAuth session (the tokens) is gone from storage, the library
// ends the local session too; the page says so and shows the login form.
func TestOAuthSessionGone(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	b.Login("alice.test", true)
	res := a.Store.DB().Exec(`DELETE FROM ginoauth_kv WHERE key LIKE 'oauth:sess:%'`)
	if res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("deleting the OAuth session: %v, %d rows", res.Error, res.RowsAffected)
	}
	p := b.Post("/pds/session", url.Values{})
	if p.Status != http.StatusUnauthorized || !p.Contains("no longer accepts this login") || !p.Contains(`id="handle"`) {
		t.Fatalf("want 401 and the start page with an explanation, got %d: %.500s", p.Status, p.Body)
	}
	if p := b.Get("/"); p.Contains(demoapp.DemoAccount.DID) {
		t.Fatal("the local session should have ended with the OAuth session")
	}
}

// ginoauth.New refuses a redirect URI; ManagerError names the variable.
func TestManagerErrorNamesMobileRedirectURIs(t *testing.T) {
	store := ginoauthStore(t)
	client := indigoclient.New(indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", []string{"atproto"}), store, indigoclient.Options{})
	defer client.Close()
	_, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  client,
		Storage:      store,
		CookieSecret: strings.Repeat("s", 40),
		BaseURL:      "http://127.0.0.1:8080",
		Mobile:       ginoauth.MobileConfig{RedirectURIs: []string{"app://auth-callback"}},
	})
	err = demoapp.ManagerError(err)
	var ce *demoapp.ConfigError
	if !errors.As(err, &ce) || ce.Var != demoapp.EnvMobileRedirectURIs || !strings.HasPrefix(err.Error(), "configuration: MOBILE_REDIRECT_URIS: ") || !strings.Contains(err.Error(), "app://auth-callback") {
		t.Fatalf("got %v", err)
	}
	other := errors.New("something else")
	if demoapp.ManagerError(other) != other || demoapp.ManagerError(nil) != nil {
		t.Fatal("other errors must pass unchanged")
	}
}

func TestBannerNativeApps(t *testing.T) {
	var off, on, other bytes.Buffer
	demoapp.Banner{URLs: []string{"http://127.0.0.1:8080"}}.Print(&off)
	demoapp.Banner{URLs: []string{"http://127.0.0.1:8080"}, Native: []string{"http://127.0.0.1/native/callback"}}.Print(&on)
	demoapp.Banner{URLs: []string{"http://127.0.0.1:9000"}, Native: []string{"http://127.0.0.1/native/callback"}}.Print(&other)
	if strings.Contains(off.String(), "Native") {
		t.Errorf("native apps off:\n%s", off.String())
	}
	for _, want := range []string{"Native:", "http://127.0.0.1/native/callback", "POST /api/auth/mobile-start", "POST /api/auth/mobile-token", "POST /api/auth/mobile-refresh", "GET /mobile/refresh-token", "POST /api/logout", "try it: go run ./examples/native"} {
		if !strings.Contains(on.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, on.String())
		}
	}
	if !strings.Contains(other.String(), "try it: BACKEND_URL=http://127.0.0.1:9000 go run ./examples/native") {
		t.Errorf("on another port the banner names BACKEND_URL:\n%s", other.String())
	}
	if urls := demotest.URLsFromBanner(t, strings.NewReader(on.String()), 1, time.Second); urls[0] != "http://127.0.0.1:8080" {
		t.Errorf("the native lines confuse URLsFromBanner: %v", urls)
	}
}
