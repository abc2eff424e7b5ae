package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
)

// startApp runs the example's run() in-process, as `go run ./examples/basic`
// would with the given environment, on a free port, and returns its URL and
// a function that stops it (Ctrl+C) and returns run's error.
func startApp(t *testing.T, env map[string]string) (string, func() error) {
	t.Helper()
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, getenv, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	var urls []string
	select {
	case err := <-done:
		t.Fatalf("run exited before serving: %v", err)
	default:
		urls = demotest.URLsFromBanner(t, pr, 1, 30*time.Second)
	}
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(demoapp.ShutdownTimeout + 5*time.Second):
				t.Fatal("run did not return after the context was cancelled")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return urls[0], stop
}

func offlineEnv(t *testing.T) map[string]string {
	return map[string]string{
		"ADDR":      "127.0.0.1:0",
		"DATA_DIR":  filepath.Join(t.TempDir(), "data"),
		"LOG_LEVEL": "error",
	}
}

// The whole offline story, as a person would click through it.
func TestOfflineLoginPDSCallLogout(t *testing.T) {
	env := offlineEnv(t)
	base, stop := startApp(t, env)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("the app must be opened on 127.0.0.1, banner says %s", base)
	}
	b := demotest.NewBrowser(t, base)

	start := b.Get("/")
	if start.Status != http.StatusOK || !start.Contains("Log in with your handle") || !start.Contains("alice.test") {
		t.Fatalf("start page: %d %.500s", start.Status, start.Body)
	}
	if csp := start.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("start page CSP = %q", csp)
	}

	acct := b.Login("alice.test", true)
	if acct.Status != http.StatusOK || !acct.Contains("@alice.test") || !acct.Contains(demoapp.DemoAccount.DID) {
		t.Fatalf("after login: want the account page with handle and DID, got %d: %.800s", acct.Status, acct.Body)
	}
	for _, want := range []string{"atproto", "repo:com.example.ginoauth.note?action=create", "Session ends", "Log out"} {
		if !acct.Contains(want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if acct.Header.Get("Cache-Control") != "no-store" {
		t.Error("the account page must not be cached")
	}
	sid := b.Cookie("sid")
	if sid == nil {
		t.Fatal("no sid cookie after login")
	}

	// An authenticated PDS call through the server-side OAuth session. Form
	// posts answer 303 back to the account page (Post/Redirect/Get), which
	// shows the result once.
	call := b.Post("/pds/session", url.Values{})
	if call.Status != http.StatusSeeOther || call.Header.Get("Location") != "/#pds" {
		t.Fatalf("PDS call: want 303 to /#pds, got %d %q", call.Status, call.Header.Get("Location"))
	}
	if p := b.Follow(call); !p.Contains("Your PDS confirms this login belongs to alice.test ("+demoapp.DemoAccount.DID+")") || !p.Contains(`"did": "`+demoapp.DemoAccount.DID+`"`) {
		t.Fatalf("PDS call result: %d %.1200s", p.Status, p.Body)
	}
	if again := b.Get("/"); again.Contains("Your PDS confirms") || !again.Contains("@alice.test") {
		t.Fatalf("a reload shows the account page without the old result: %.800s", again.Body)
	}
	note := b.Follow(b.Post("/pds/note", url.Values{"text": {"hello from the test"}}))
	if !note.Contains("Note saved") || !note.Contains("hello from the test") || !note.Contains("at://"+demoapp.DemoAccount.DID+"/"+demoapp.NoteCollection+"/") {
		t.Fatalf("createRecord: %d %.1200s", note.Status, note.Body)
	}
	empty := b.Post("/pds/note", url.Values{"text": {"   "}})
	if p := b.Follow(empty); empty.Status != http.StatusSeeOther || !p.Contains("Note not saved") || !p.Contains("Write something first") {
		t.Fatalf("empty note: want a redirect to a message, got %d: %.600s", empty.Status, p.Body)
	}
	if p := b.Follow(b.Post("/pds/note", url.Values{"text": {strings.Repeat("é", 301)}})); !p.Contains("at most 300 characters") {
		t.Fatalf("long note: want a message, got %d", p.Status)
	}

	// Your devices: this browser, marked as this device.
	if devices := b.Get("/"); !devices.Contains("Your devices") || strings.Count(devices.Body, `class="device current"`) != 1 || !devices.Contains("This device") {
		t.Fatalf("devices section: %.2000s", devices.Body)
	}

	// The JSON routes of the library are mounted too.
	js := b.Do(http.MethodGet, "/api/session", nil, "")
	if js.Status != http.StatusOK || !strings.Contains(js.Body, `"valid":true`) {
		t.Fatalf("/api/session: %d %s", js.Status, js.Body)
	}

	// A form post from another site is refused.
	forged := b.Do(http.MethodPost, "/logout", url.Values{}, "https://evil.example")
	if forged.Status != http.StatusForbidden {
		t.Fatalf("cross-site logout: want 403, got %d", forged.Status)
	}

	out := b.Post("/logout", url.Values{})
	if out.Status != http.StatusSeeOther || out.Header.Get("Location") != "/" {
		t.Fatalf("logout: want 303 to /, got %d %q", out.Status, out.Header.Get("Location"))
	}
	if b.Cookie("sid") != nil {
		t.Fatal("the sid cookie must be gone after logout")
	}
	if again := b.Follow(out); !again.Contains("Log in with your handle") || !again.Contains("You are logged out") {
		t.Fatalf("after logout: want the start page with a notice, got %.600s", again.Body)
	}
	if again := b.Get("/"); again.Contains("You are logged out") {
		t.Fatal("the logged-out notice shows once, not on every visit")
	}

	// Replaying the old cookie after logout gets the start page, not the account.
	replay := demotest.NewBrowser(t, base)
	u, _ := url.Parse(base)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "sid", Value: sid.Value, Path: "/"}})
	if p := replay.Get("/"); p.Contains(demoapp.DemoAccount.DID) {
		t.Fatal("an old session cookie still works after logout")
	}

	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	// The generated secret is private to its owner, and so is the database.
	for _, name := range []string{"cookie-secret", "sessions.db", ".gitignore"} {
		info, err := os.Stat(filepath.Join(env["DATA_DIR"], name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0600", name, info.Mode().Perm())
		}
	}
}

// Logging in again after a restart of the app keeps using the same SQLite
// file and secret: a session made before the restart is still valid.
func TestSessionSurvivesRestart(t *testing.T) {
	env := offlineEnv(t)
	base, stop := startApp(t, env)
	b := demotest.NewBrowser(t, base)
	if p := b.Login("bob.test", true); !p.Contains("@bob.test") {
		t.Fatalf("login as bob: %.500s", p.Body)
	}
	sid := b.Cookie("sid")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	base2, _ := startApp(t, env) // same DATA_DIR, new port
	b2 := demotest.NewBrowser(t, base2)
	u, _ := url.Parse(base2)
	b2.Jar.SetCookies(u, []*http.Cookie{{Name: "sid", Value: sid.Value, Path: "/"}})
	if p := b2.Get("/"); !p.Contains("@bob.test") {
		t.Fatalf("the session did not survive a restart: %.500s", p.Body)
	}
}

func TestDeniedLogin(t *testing.T) {
	base, _ := startApp(t, offlineEnv(t))
	b := demotest.NewBrowser(t, base)
	p := b.Login("alice.test", false)
	if p.Status != http.StatusBadRequest || !p.Contains("cancelled or denied") || !p.Contains("Login failed") {
		t.Fatalf("denied login: want 400 with a message, got %d: %.500s", p.Status, p.Body)
	}
	if b.Cookie("sid") != nil {
		t.Fatal("a denied login must not set a session cookie")
	}
}

func TestBadHandleIsShownOnTheStartPage(t *testing.T) {
	base, _ := startApp(t, offlineEnv(t))
	b := demotest.NewBrowser(t, base)
	for handle, want := range map[string]string{
		"":                        "Enter your handle",
		"not a handle":            "not a valid handle",
		"carol.test":              "No account was found",
		strings.Repeat("a", 5000): "too long",
	} {
		p := b.Post("/login", url.Values{"handle": {handle}})
		if p.Status != http.StatusBadRequest || !p.Contains(want) || !p.Contains(`id="handle"`) {
			t.Errorf("handle %.20q: want 400 and the start page saying %q, got %d: %.300s", handle, want, p.Status, p.Body)
		}
	}
	// API clients, which do not ask for HTML, still get the library's JSON.
	resp, err := http.PostForm(base+"/login", url.Values{"handle": {"carol.test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(ct, "application/json") {
		t.Errorf("non-browser client got %d %q, want 400 JSON", resp.StatusCode, ct)
	}
}

func TestConfigErrorsStopTheApp(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"short secret":     {"COOKIE_SECRET": "too-short"},
		"bad addr":         {"ADDR": "8080"},
		"http public url":  {"PUBLIC_URL": "http://myapp.example"},
		"key without url":  {"CLIENT_SECRET_KEY": "zabc", "CLIENT_KEY_ID": "k1"},
		"unknown network":  {"ATPROTO_NETWORK": "mastodon"},
		"bad session ttl":  {"SESSION_TTL": "forever"},
		"bad log level":    {"LOG_LEVEL": "loud"},
		"scopes w/o proto": {"OAUTH_SCOPES": "transition:generic"},
	} {
		env["DATA_DIR"] = filepath.Join(t.TempDir(), "data")
		err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), "configuration: ") {
			t.Errorf("%s: want a configuration error, got %v", name, err)
		}
	}
}

// An app listening only on the IPv6 loopback address logs in there too.
func TestIPv6Loopback(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		ln.Close()
	}
	env := offlineEnv(t)
	env["ADDR"] = "[::1]:0"
	base, _ := startApp(t, env)
	if !strings.HasPrefix(base, "http://[::1]:") {
		t.Fatalf("banner URL %s", base)
	}
	b := demotest.NewBrowser(t, base)
	if p := b.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login on [::1]: %d %.500s", p.Status, p.Body)
	}
}

// MOBILE_REDIRECT_URIS turns on the native-app routes (examples/native
// drives them end to end), and the banner says so; a scheme any app could
// claim stops the app with a message naming the variable.
func TestNativeAppRoutes(t *testing.T) {
	env := offlineEnv(t)
	env["MOBILE_REDIRECT_URIS"] = "http://127.0.0.1/native/callback com.example.app:/oauth/callback"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return env[k] }, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	var banner strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(banner.String(), "Stop:") {
		n, err := pr.Read(buf)
		banner.Write(buf[:n])
		if err != nil {
			t.Fatalf("banner: %v\n%s", err, banner.String())
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	urls := demotest.URLsFromBanner(t, strings.NewReader(banner.String()), 1, time.Second)
	for _, want := range []string{"Native:", "http://127.0.0.1/native/callback", "/api/auth/mobile-start", "BACKEND_URL=" + urls[0] + " go run ./examples/native"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}

	start := func(redirectURI string) (int, string) {
		t.Helper()
		body := `{"handle":"alice.test","code_challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM","code_challenge_method":"S256","redirect_uri":"` + redirectURI + `","state":"s"}`
		resp, err := http.Post(urls[0]+"/api/auth/mobile-start", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := start("http://127.0.0.1:49152/native/callback"); st != http.StatusOK || !strings.Contains(body, `"authUrl"`) {
		t.Fatalf("mobile-start with a loopback redirect on any port: %d %s", st, body)
	}
	if st, body := start("app://auth-callback"); st != http.StatusBadRequest || !strings.Contains(body, "invalid_redirect_uri") {
		t.Fatalf("mobile-start with an unregistered redirect: %d %s", st, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}

	bad := offlineEnv(t)
	bad["MOBILE_REDIRECT_URIS"] = "app://auth-callback"
	err := run(context.Background(), func(k string) string { return bad[k] }, io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "configuration: MOBILE_REDIRECT_URIS: ") || !strings.Contains(err.Error(), "app://auth-callback") {
		t.Fatalf("a claimable scheme: want a configuration error naming MOBILE_REDIRECT_URIS, got %v", err)
	}
}

// GET /metrics answers Prometheus text with the library's measurements:
// the login and the session checks of the requests before the scrape.
func TestMetrics(t *testing.T) {
	base, _ := startApp(t, offlineEnv(t))
	b := demotest.NewBrowser(t, base)
	if p := b.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login: %.300s", p.Body)
	}
	b.Get("/")
	text := scrape(t, base)
	for _, want := range []string{
		`ginoauth_logins_started_total{kind="web"} 1`,
		`ginoauth_logins_finished_total{code="ok"} 1`,
		`ginoauth_login_callback_seconds_count 1`,
		`ginoauth_session_check_seconds_count{outcome="ok"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Scrapes themselves are not session checks.
	checks := func(text string) string {
		var counts []string
		for line := range strings.Lines(text) {
			if strings.HasPrefix(line, "ginoauth_session_check_seconds_count{") {
				counts = append(counts, strings.TrimSpace(line))
			}
		}
		return strings.Join(counts, "; ")
	}
	if again := scrape(t, base); checks(again) != checks(text) {
		t.Errorf("a scrape counted as a session check: %q, then %q", checks(text), checks(again))
	}
}

// scrape returns the text of GET /metrics.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(body)
}
