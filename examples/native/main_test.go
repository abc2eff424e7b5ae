package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
)

// The whole flow offline, as `go run ./examples/native` runs it against
// `go run ./examples/basic`, with a system browser that is an HTTP client:
// login, an API call as alice.test, rotation, a call with the new token,
// logout, and every token refused afterwards.
func TestNativeAppOffline(t *testing.T) {
	backend, banner := startBackend(t, offlineEnv(t))
	for _, want := range []string{"Native:", RegisteredRedirect, PathMobileStart, PathMobileToken, PathMobileRefresh, "go run ./examples/native"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner should mention %q:\n%s", want, banner)
		}
	}
	var out bytes.Buffer
	app, err := NewApp(backend, &out)
	if err != nil {
		t.Fatal(err)
	}
	app.Wait = 30 * time.Second
	var seen trip
	rep, err := app.Run(context.Background(), demoapp.DemoAccount.Handle, systemBrowser(t, backend, demoapp.DemoAccount.Handle, true, &seen))
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}

	// The system browser's trip: consent, the backend's callback, the app.
	au, err := url.Parse(seen.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	if q := au.Query(); len(q) != 2 || q.Get("code") == "" || q.Get("state") == "" {
		t.Errorf("the app redirect must carry only code and state, got %v", q)
	}
	if seen.PageStatus != http.StatusOK || !strings.Contains(seen.PageBody, "You can close this window") {
		t.Errorf("the loopback page: %d %.300s", seen.PageStatus, seen.PageBody)
	}
	for _, c := range seen.SetCookies {
		if strings.HasPrefix(c, "sid=") || strings.HasPrefix(c, "__Host-sid=") {
			t.Errorf("a native login must not give the system browser a session cookie: %s", c)
		}
	}

	// Login.
	s := rep.Login
	if s.Handle != demoapp.DemoAccount.Handle || s.DID != demoapp.DemoAccount.DID || s.TokenType != "Bearer" {
		t.Fatalf("mobile-token: %v", s)
	}
	if !s.ExpiresAt.After(time.Now()) || !slices.Contains(s.Scopes, "atproto") {
		t.Errorf("mobile-token: expires %v, scopes %v", s.ExpiresAt, s.Scopes)
	}
	// The API call as alice.test, the rotation, the call with the new token.
	if !rep.Before.Valid || rep.Before.Handle != "alice.test" || rep.Before.DID != demoapp.DemoAccount.DID || !slices.Contains(rep.Before.Scopes, "atproto") {
		t.Errorf("API call with the token: %+v", rep.Before)
	}
	if rep.Rotated.Token == s.Token || rep.Rotated.DID != s.DID || rep.Rotated.Handle != s.Handle {
		t.Errorf("rotation: want a new token for the same account, got %v", rep.Rotated)
	}
	if !rep.After.Valid || rep.After.DID != demoapp.DemoAccount.DID {
		t.Errorf("API call with the new token: %+v", rep.After)
	}

	// After logout every token of this device is refused, old and new.
	ctx := context.Background()
	for name, tok := range map[string]string{"first": s.Token, "rotated": rep.Rotated.Token} {
		if _, err := app.Session(ctx, tok); !IsUnauthorized(err) {
			t.Errorf("%s token after logout: want 401 from %s, got %v", name, PathSession, err)
		}
		if _, err := app.Refresh(ctx, tok); !IsUnauthorized(err) {
			t.Errorf("%s token after logout: want 401 from %s, got %v", name, PathMobileRefresh, err)
		}
	}

	// The output shows every step, the URL to open, and no secret.
	text := out.String()
	for _, want := range []string{
		"PKCE:", "Loopback: listening for the browser's redirect on http://127.0.0.1:",
		"mobile-start:", "/oauth/authorize?", "redirect received: the state matches",
		"mobile-token:", "Logged in as alice.test (" + demoapp.DemoAccount.DID + ")",
		"GET /api/session with the token: valid, alice.test", "mobile-refresh: rotated",
		"GET /api/session with the new token: valid", "POST /api/logout", "refused (401)",
		Fingerprint(s.Token), Fingerprint(rep.Rotated.Token), Fingerprint(seen.Code),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q:\n%s", want, text)
		}
	}
	for name, secret := range map[string]string{"session token": s.Token, "rotated token": rep.Rotated.Token, "code": seen.Code} {
		if strings.Contains(text, secret) {
			t.Errorf("the output contains the %s in full", name)
		}
	}
	if strings.Contains(s.String(), s.Token) || strings.Contains(fmtAll(s), s.Token) {
		t.Error("printing a Session shows its token")
	}
}

func fmtAll(s *Session) string {
	var b bytes.Buffer
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		b.WriteString(strings.TrimSpace(fmt.Sprintf(f, s)))
	}
	return b.String()
}

// The steps one by one: the old token keeps working within the grace
// window, a retried rotation answers the same new token, the Deno
// library's refresh route answers its shape, and logout ends it all.
func TestRotationAndLegacyRefresh(t *testing.T) {
	backend, _ := startBackend(t, offlineEnv(t))
	app, err := NewApp(backend, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var seen trip
	s, err := app.Login(ctx, "alice.test", systemBrowser(t, backend, "alice.test", true, &seen))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := app.Refresh(ctx, s.Token)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := app.Session(ctx, s.Token); err != nil || info.DID != s.DID {
		t.Fatalf("the old token within the grace window: %+v %v", info, err)
	}
	again, err := app.Refresh(ctx, s.Token)
	if err != nil || again.Token != r1.Token {
		t.Fatalf("a retried rotation within the grace window must answer the same new token: %v %v", again, err)
	}

	// GET /mobile/refresh-token: {"success":true,"payload":{"did","sid"}}.
	req, _ := http.NewRequest(http.MethodGet, backend+"/mobile/refresh-token", nil)
	req.Header.Set("Authorization", "Bearer "+r1.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var legacy struct {
		Success bool
		Payload struct{ DID, SID string }
	}
	err = json.NewDecoder(resp.Body).Decode(&legacy)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !legacy.Success || legacy.Payload.DID != s.DID || legacy.Payload.SID == "" || legacy.Payload.SID == r1.Token {
		t.Fatalf("legacy refresh: %d %+v %v", resp.StatusCode, legacy, err)
	}
	if info, err := app.Session(ctx, legacy.Payload.SID); err != nil || info.Handle != "alice.test" {
		t.Fatalf("the legacy route's sid is a session token: %+v %v", info, err)
	}

	if err := app.Logout(ctx, legacy.Payload.SID); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"first": s.Token, "rotated": r1.Token, "legacy": legacy.Payload.SID} {
		if _, err := app.Session(ctx, tok); !IsUnauthorized(err) {
			t.Errorf("%s token after logout: want 401, got %v", name, err)
		}
	}
	// The legacy route fails closed in its own shape.
	req, _ = http.NewRequest(http.MethodGet, backend+"/mobile/refresh-token", nil)
	req.Header.Set("Authorization", "Bearer "+legacy.Payload.SID)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"success":false`) {
		t.Errorf("legacy refresh after logout: %d %s", resp.StatusCode, body)
	}
}

// The code in the redirect is worthless without the app's verifier: a
// wrong one is refused and burns the code.
func TestCodeNeedsTheVerifier(t *testing.T) {
	backend, _ := startBackend(t, offlineEnv(t))
	app, err := NewApp(backend, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pkce := NewPKCE()
	state := randomString(16)
	lb, err := ListenLoopback(CallbackPath, state)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	authURL, err := app.Start(ctx, StartRequest{Handle: "alice.test", CodeChallenge: pkce.Challenge, CodeChallengeMethod: "S256", RedirectURI: lb.RedirectURI, State: state})
	if err != nil {
		t.Fatal(err)
	}
	var seen trip
	if err := systemBrowser(t, backend, "alice.test", true, &seen)(ctx, authURL); err != nil {
		t.Fatal(err)
	}
	code, err := lb.Wait(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ae *APIError
	if _, err := app.Redeem(ctx, code, NewPKCE().Verifier, lb.RedirectURI); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "invalid_grant" {
		t.Fatalf("a wrong verifier: want 400 invalid_grant, got %v", err)
	}
	if _, err := app.Redeem(ctx, code, pkce.Verifier, lb.RedirectURI); !errors.As(err, &ae) || ae.Code != "invalid_grant" {
		t.Fatalf("the code must be burned by the failed attempt, got %v", err)
	}
}

func TestDeniedLogin(t *testing.T) {
	backend, _ := startBackend(t, offlineEnv(t))
	app, err := NewApp(backend, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	app.Wait = 10 * time.Second
	var seen trip
	_, err = app.Login(context.Background(), "alice.test", systemBrowser(t, backend, "alice.test", false, &seen))
	if err == nil || !strings.Contains(err.Error(), "did not complete") {
		t.Fatalf("a denied login: want an error saying so, got %v", err)
	}
	if seen.Code != "" || seen.PageStatus != http.StatusOK || !strings.Contains(seen.PageBody, "Login not completed") {
		t.Errorf("denied: code %q, page %d %.200s", seen.Code, seen.PageStatus, seen.PageBody)
	}
}

// A backend that registers another redirect URI refuses the app's before
// any browser opens; one without MOBILE_REDIRECT_URIS has no native routes.
func TestBackendRefusesUnregisteredApps(t *testing.T) {
	noBrowser := func(context.Context, string) error {
		t.Error("the browser must not be opened")
		return nil
	}
	env := offlineEnv(t)
	env["MOBILE_REDIRECT_URIS"] = "http://127.0.0.1/elsewhere com.example.app:/oauth/callback"
	backend, _ := startBackend(t, env)
	app, _ := NewApp(backend, io.Discard)
	var ae *APIError
	if _, err := app.Login(context.Background(), "alice.test", noBrowser); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "invalid_redirect_uri" {
		t.Fatalf("an unregistered redirect URI: want 400 invalid_redirect_uri, got %v", err)
	}

	env = offlineEnv(t)
	delete(env, "MOBILE_REDIRECT_URIS")
	backend, banner := startBackend(t, env)
	if strings.Contains(banner, "Native:") {
		t.Errorf("the banner mentions native apps while they are off:\n%s", banner)
	}
	app, _ = NewApp(backend, io.Discard)
	if _, err := app.Login(context.Background(), "alice.test", noBrowser); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("native routes off: want 404, got %v", err)
	}
}

func TestBackendRefusesClaimableSchemes(t *testing.T) {
	for _, uri := range []string{"app://auth-callback", "myapp:/callback", "http://example.com/callback"} {
		env := offlineEnv(t)
		env["MOBILE_REDIRECT_URIS"] = uri
		err := runBackend(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
		var ce *demoapp.ConfigError
		if !errors.As(err, &ce) || ce.Var != "MOBILE_REDIRECT_URIS" || !strings.HasPrefix(err.Error(), "configuration: ") || !strings.Contains(err.Error(), uri) {
			t.Errorf("%s: want a configuration error naming MOBILE_REDIRECT_URIS, got %v", uri, err)
		}
	}
}

// The loopback listener takes one redirect with the right state, refuses
// everything else, and times out.
func TestLoopback(t *testing.T) {
	lb, err := ListenLoopback(CallbackPath, "the-state")
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if !strings.HasPrefix(lb.RedirectURI, "http://127.0.0.1:") || !strings.HasSuffix(lb.RedirectURI, CallbackPath) {
		t.Fatalf("redirect URI %s", lb.RedirectURI)
	}
	get := func(method, target string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, target, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if method == http.MethodGet && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("the page must not be cached nor leak its URL: %v", resp.Header)
			}
		}
		return resp.StatusCode, string(b)
	}
	if st, _ := get(http.MethodGet, lb.RedirectURI+"?code=evil&state=other"); st != http.StatusBadRequest {
		t.Errorf("wrong state: want 400, got %d", st)
	}
	if st, _ := get(http.MethodGet, lb.RedirectURI+"?code=evil"); st != http.StatusBadRequest {
		t.Errorf("no state: want 400, got %d", st)
	}
	if st, _ := get(http.MethodPost, lb.RedirectURI+"?code=c&state=the-state"); st != http.StatusMethodNotAllowed {
		t.Errorf("POST: want 405, got %d", st)
	}
	base := strings.TrimSuffix(lb.RedirectURI, CallbackPath)
	if st, _ := get(http.MethodGet, base+"/other?code=c&state=the-state"); st != http.StatusNotFound {
		t.Errorf("another path: want 404, got %d", st)
	}
	if st, body := get(http.MethodGet, lb.RedirectURI+"?code=the-code&state=the-state"); st != http.StatusOK || !strings.Contains(body, "You can close this window") {
		t.Errorf("the redirect: %d %s", st, body)
	}
	if st, _ := get(http.MethodGet, lb.RedirectURI+"?code=second&state=the-state"); st != http.StatusGone {
		t.Errorf("a second redirect: want 410, got %d", st)
	}
	code, err := lb.Wait(context.Background(), 5*time.Second)
	if err != nil || code != "the-code" {
		t.Fatalf("Wait: %q %v", code, err)
	}

	// Nothing comes: a timeout that says what was ignored.
	lb2, err := ListenLoopback(CallbackPath, "s2")
	if err != nil {
		t.Fatal(err)
	}
	defer lb2.Close()
	get(http.MethodGet, lb2.RedirectURI+"?code=x&state=nope")
	if _, err := lb2.Wait(context.Background(), 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not come back") || !strings.Contains(err.Error(), "1 redirect(s)") {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lb2.Wait(ctx, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestOptions(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	o, err := parseOptions(nil, env(nil), io.Discard)
	if err != nil || o.Backend != DefaultBackendURL || o.Handle != DefaultHandle || o.NoBrowser || o.Timeout != DefaultTimeout {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	o, err = parseOptions(nil, env(map[string]string{"BACKEND_URL": "https://api.example.com", "HANDLE": "bob.test", "NO_BROWSER": "1", "LOGIN_TIMEOUT": "2m"}), io.Discard)
	if err != nil || o.Backend != "https://api.example.com" || o.Handle != "bob.test" || !o.NoBrowser || o.Timeout != 2*time.Minute {
		t.Fatalf("from the environment: %+v %v", o, err)
	}
	o, err = parseOptions([]string{"-backend", "http://127.0.0.1:9000", "-no-browser=false"}, env(map[string]string{"BACKEND_URL": "https://api.example.com", "NO_BROWSER": "1"}), io.Discard)
	if err != nil || o.Backend != "http://127.0.0.1:9000" || o.NoBrowser {
		t.Fatalf("flags win over the environment: %+v %v", o, err)
	}
	for name, bad := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"no browser":  {nil, map[string]string{"NO_BROWSER": "maybe"}},
		"timeout env": {nil, map[string]string{"LOGIN_TIMEOUT": "soon"}},
		"timeout":     {[]string{"-timeout", "1ms"}, nil},
		"extra args":  {[]string{"alice.test"}, nil},
		"no handle":   {[]string{"-handle", " "}, nil},
	} {
		if _, err := parseOptions(bad.args, env(bad.env), io.Discard); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	for _, bad := range []string{"http://api.example.com", "ftp://127.0.0.1", "http://127.0.0.1:8080/api", "127.0.0.1:8080", ""} {
		if _, err := NewApp(bad, nil); err == nil {
			t.Errorf("NewApp(%q): want an error", bad)
		}
	}
	if a, err := NewApp("http://127.0.0.1:8080/", nil); err != nil || a.Backend != "http://127.0.0.1:8080" {
		t.Errorf("NewApp with a trailing slash: %v %v", a, err)
	}
	for goos, want := range map[string]string{"linux": "xdg-open", "freebsd": "xdg-open", "darwin": "open", "windows": "rundll32"} {
		if name, args := browserCommand(goos, "https://x.example/?a=1&b=2"); name != want || args[len(args)-1] != "https://x.example/?a=1&b=2" {
			t.Errorf("%s: %s %v", goos, name, args)
		}
	}
	if !IsUnauthorized(&APIError{Status: 401}) || IsUnauthorized(errors.New("x")) {
		t.Error("IsUnauthorized")
	}
}

// A browser that fails makes the login fail at once, not at the timeout.
func TestBrowserFailureEndsTheLogin(t *testing.T) {
	backend, _ := startBackend(t, offlineEnv(t))
	app, _ := NewApp(backend, io.Discard)
	start := time.Now()
	if _, err := app.Login(context.Background(), "alice.test", failingBrowser); err == nil || !strings.Contains(err.Error(), "no browser here") {
		t.Fatalf("want the browser's error, got %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("the login waited for its timeout")
	}
}

// The README's commands with the real binaries: examples/basic with
// MOBILE_REDIRECT_URIS, then examples/native with NO_BROWSER=1, whose
// printed URL the test's system browser opens.
func TestRealBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs examples/basic and examples/native; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	tmp := t.TempDir()
	for _, name := range []string{"basic", "native"} {
		build := exec.Command(goTool, "build", "-o", filepath.Join(tmp, name), "./examples/"+name)
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
		}
	}

	env := offlineEnv(t)
	basic := exec.Command(filepath.Join(tmp, "basic"))
	basic.Env = append(os.Environ(), "ADDR="+env["ADDR"], "DATA_DIR="+env["DATA_DIR"], "LOG_LEVEL=error", "MOBILE_REDIRECT_URIS="+RegisteredRedirect)
	basicOut, _ := basic.StdoutPipe()
	if err := basic.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // Ctrl+C, as a person would stop it
		_ = basic.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- basic.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("examples/basic after Ctrl+C: %v", err)
			}
		case <-time.After(demoapp.ShutdownTimeout + 5*time.Second):
			_ = basic.Process.Kill()
			t.Error("examples/basic did not stop after Ctrl+C")
		}
	})
	backend, banner := "", ""
	sc := bufio.NewScanner(basicOut)
	for sc.Scan() && !strings.Contains(sc.Text(), "Stop:") {
		banner += sc.Text() + "\n"
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "Open:" {
			backend = f[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, basicOut) }()
	if backend == "" || !strings.Contains(banner, "BACKEND_URL="+backend+" go run ./examples/native") {
		t.Fatalf("examples/basic's banner:\n%s", banner)
	}

	native := exec.Command(filepath.Join(tmp, "native"), "-timeout", "30s")
	native.Env = append(os.Environ(), "BACKEND_URL="+backend, "NO_BROWSER=1")
	var stderr bytes.Buffer
	native.Stderr = &stderr
	nativeOut, _ := native.StdoutPipe()
	if err := native.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // only if the test failed before it exited
		if native.ProcessState == nil {
			_ = native.Process.Kill()
			_ = native.Wait()
		}
	})
	var printed strings.Builder
	lines := bufio.NewScanner(nativeOut)
	authURL := ""
	for authURL == "" && lines.Scan() {
		printed.WriteString(lines.Text() + "\n")
		if l := strings.TrimSpace(lines.Text()); strings.HasPrefix(l, "http") && strings.Contains(l, "/oauth/authorize?") {
			authURL = l
		}
	}
	if authURL == "" {
		t.Fatalf("examples/native printed no URL to open:\n%s%s", printed.String(), stderr.String())
	}
	var seen trip
	if err := systemBrowser(t, backend, "alice.test", true, &seen)(context.Background(), authURL); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(nativeOut)
	printed.Write(rest)
	if err := native.Wait(); err != nil {
		t.Fatalf("examples/native: %v\n%s%s", err, printed.String(), stderr.String())
	}
	text := printed.String()
	for _, want := range []string{"Logged in as alice.test", "rotated", "refused (401)", "Done."} {
		if !strings.Contains(text, want) {
			t.Errorf("examples/native's output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, seen.Code) {
		t.Error("examples/native printed the code in full")
	}
}

// When the login is revoked at the authorization server, rotation fails
// closed: 401, the device session ended, never a fresh token (the Deno
// library answered success with a new token). The legacy route says so in
// its own shape.
func TestRefreshFailsClosedWhenTheLoginIsGone(t *testing.T) {
	backend, _, network := startBackendNetwork(t, offlineEnv(t))
	app, _ := NewApp(backend, io.Discard)
	ctx := context.Background()
	for _, legacy := range []bool{false, true} {
		var seen trip
		s, err := app.Login(ctx, "alice.test", systemBrowser(t, backend, "alice.test", true, &seen))
		if err != nil {
			t.Fatal(err)
		}
		if n := network.Local().RevokeAll(demoapp.DemoAccount.DID); n == 0 {
			t.Fatal("nothing to revoke at the authorization server")
		}
		if legacy {
			req, _ := http.NewRequest(http.MethodGet, backend+"/mobile/refresh-token", nil)
			req.Header.Set("Authorization", "Bearer "+s.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"success":false`) || strings.Contains(string(body), "payload") {
				t.Fatalf("legacy refresh of a revoked login: %d %s", resp.StatusCode, body)
			}
		} else if _, err := app.Refresh(ctx, s.Token); !IsUnauthorized(err) {
			t.Fatalf("refresh of a revoked login: want 401, got %v", err)
		}
		if _, err := app.Session(ctx, s.Token); !IsUnauthorized(err) {
			t.Fatalf("the token after a failed refresh: want 401, got %v", err)
		}
	}
}
