package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// RegisteredRedirect is what the backend registers for this app:
// loopback, matched on any port (RFC 8252 section 7.3).
const RegisteredRedirect = "http://127.0.0.1" + CallbackPath

// runBackend is examples/basic's run(), line for line: a test cannot
// import a main package, so the wiring is repeated here. Keep the two in
// step (TestRealBinaries runs the real examples/basic too). The one
// addition: gotNetwork, when set, is given the network once it runs, so a
// test can act on the built-in authorization server.
func runBackend(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	return runBackendWith(ctx, getenv, stdout, stderr, nil)
}

func runBackendWith(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer, gotNetwork func(*demoapp.Network)) error {
	cfg, err := demoapp.LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := cfg.Logger(stderr)
	slog.SetDefault(log)
	cfg.WarnIfGeneratedSecret(stderr)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set ADDR to change it): %w", cfg.Addr, err)
	}
	defer ln.Close()
	baseURL := cfg.BaseURL(ln.Addr())

	store, err := sqlitestore.Open(cfg.SQLitePath, sqlitestore.Options{CleanupInterval: 10 * time.Minute, Logger: log})
	if err != nil {
		return fmt.Errorf("open %s: %w", cfg.SQLitePath, err)
	}
	defer store.Close()

	network, err := demoapp.StartNetwork(cfg, log)
	if err != nil {
		return err
	}
	defer network.Close()
	if gotNetwork != nil {
		gotNetwork(network)
	}
	clientConfig, err := network.ClientConfig(baseURL)
	if err != nil {
		return err
	}

	client := indigoclient.New(clientConfig, store, network.ClientOptions(log))
	defer client.Close()
	pageOpts := demoapp.PageOptions{BaseURL: baseURL, Network: network, Logger: log}
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  client,
		Storage:      store,
		CookieSecret: cfg.CookieSecret,
		BaseURL:      baseURL,
		LocalDomains: network.LocalDomains(),
		SessionTTL:   cfg.SessionTTL,
		Logger:       log,
		ErrorHandler: demoapp.ErrorPages(pageOpts),
		Mobile:       ginoauth.MobileConfig{RedirectURIs: cfg.MobileRedirectURIs},
	})
	if err != nil {
		return demoapp.ManagerError(err)
	}
	defer mgr.Close()
	pages := demoapp.NewPages(mgr, pageOpts)
	r := demoapp.NewEngine()
	r.Use(pages.Middleware()...)
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	pages.Mount(r)

	demoapp.Banner{URLs: []string{baseURL}, Network: network, Storage: "SQLite file " + cfg.SQLitePath, Native: cfg.MobileRedirectURIs}.Print(stdout)
	return demoapp.Serve(ctx, ln, r, log)
}

// startBackend runs the backend in-process, as examples/basic/main_test.go
// starts run(): with the environment env, on a free port; it returns the
// URL from the banner and the whole banner text.
func startBackend(t *testing.T, env map[string]string) (string, string) {
	t.Helper()
	base, banner, _ := startBackendNetwork(t, env)
	return base, banner
}

// startBackendNetwork is startBackend that also returns the backend's
// network, whose Local() is the built-in authorization server.
func startBackendNetwork(t *testing.T, env map[string]string) (string, string, *demoapp.Network) {
	t.Helper()
	netc := make(chan *demoapp.Network, 1)
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var banner strings.Builder
	var mu sync.Mutex
	tee := io.TeeReader(pr, lockedWriter{&mu, &banner})
	done := make(chan error, 1)
	go func() {
		err := runBackendWith(ctx, getenv, pw, io.Discard, func(n *demoapp.Network) { netc <- n })
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	var urls []string
	select {
	case err := <-done:
		t.Fatalf("the backend exited before serving: %v", err)
	default:
		urls = demotest.URLsFromBanner(t, tee, 1, 60*time.Second)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("backend shutdown: %v", err)
			}
		case <-time.After(demoapp.ShutdownTimeout + 5*time.Second):
			t.Error("the backend did not stop after its context was cancelled")
		}
	})
	// The banner ends with its "Stop:" line; wait for it before reading.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		text := banner.String()
		mu.Unlock()
		if strings.Contains(text, "Stop:") || time.Now().After(deadline) {
			return urls[0], text, <-netc
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// offlineEnv is the backend's environment: offline, a fresh data
// directory, a free port, and this app's redirect URI registered.
func offlineEnv(t *testing.T) map[string]string {
	return map[string]string{
		"ADDR":                 "127.0.0.1:0",
		"DATA_DIR":             filepath.Join(t.TempDir(), "data"),
		"LOG_LEVEL":            "error",
		"MOBILE_REDIRECT_URIS": RegisteredRedirect,
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// trip is what the test's system browser saw.
type trip struct {
	Callback   string // the backend callback URL the authorization server sent it to
	AppURL     string // the URL it was redirected to after that: the app's loopback
	Code       string // the one-time code in AppURL
	PageStatus int    // the loopback page's status
	PageBody   string
	SetCookies []string // Set-Cookie lines of the backend's callback
}

// systemBrowser returns a Browser that does what a person in the system
// browser does, as an HTTP client with its own cookie jar: load the
// authorization URL (the local server's consent page), click Approve (or
// Deny), follow the redirect to the backend's /oauth/callback, and follow
// the backend's redirect to the app's loopback port. It runs on the
// caller's goroutine (App.Login calls it synchronously), so it may fail
// the test.
func systemBrowser(t *testing.T, backend, account string, approve bool, seen *trip) Browser {
	return func(ctx context.Context, authURL string) error {
		t.Helper()
		b := demotest.NewBrowser(t, backend)
		consent := b.Get(authURL)
		if consent.Status != http.StatusOK || !strings.Contains(consent.Body, `value="approve"`) {
			t.Fatalf("consent page at %s: %d %.600s", authURL, consent.Status, consent.Body)
		}
		form := url.Values{}
		for _, m := range hiddenInput.FindAllStringSubmatch(consent.Body, -1) {
			form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
		}
		if form.Get("csrf_token") == "" || form.Get("request_uri") == "" {
			t.Fatalf("the consent page has no form: %.600s", consent.Body)
		}
		if form.Get("account") == "" {
			form.Set("account", account)
		}
		form.Set("decision", map[bool]string{true: "approve", false: "deny"}[approve])
		cu, _ := url.Parse(consent.URL)
		decided := b.Do(http.MethodPost, cu.ResolveReference(&url.URL{Path: "authorize"}).String(), form, cu.Scheme+"://"+cu.Host)
		if decided.Status != http.StatusSeeOther || !strings.HasPrefix(decided.Location(), backend+"/oauth/callback?") {
			t.Fatalf("consent decision: want 303 to the backend's callback, got %d %q", decided.Status, decided.Location())
		}
		seen.Callback = decided.Location()

		cb := b.Get(decided.Location())
		if cb.Status != http.StatusFound {
			t.Fatalf("backend callback: want 302 to the app, got %d: %.600s", cb.Status, cb.Body)
		}
		seen.AppURL = cb.Location()
		seen.SetCookies = cb.Header.Values("Set-Cookie")
		au, err := url.Parse(seen.AppURL)
		if err != nil || au.Scheme != "http" || au.Hostname() != "127.0.0.1" || au.Port() == "" || au.Path != CallbackPath {
			t.Fatalf("the backend must redirect to the app's loopback URI, got %q", seen.AppURL)
		}
		seen.Code = au.Query().Get("code")

		// Like a real browser, follow the last hop to the app's port.
		page := b.Follow(cb)
		seen.PageStatus, seen.PageBody = page.Status, page.Body
		return nil
	}
}

// failingBrowser is a Browser that cannot open anything.
func failingBrowser(context.Context, string) error { return errors.New("no browser here") }
