package ginoauth_test

import (
	"encoding/base64"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

func wantFlowError(t *testing.T, r ginoauthtest.Response, status int, code ginoauth.ErrorCode) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want %d (%s), got %d: %s", status, code, r.Status, r.Body)
	}
	if got := r.JSON(t)["code"]; got != string(code) {
		t.Fatalf("want code %q, got %v (%s)", code, got, r.Body)
	}
}

// The callback URL (code + state) works once: a replay finds no flow record.
func TestCallbackStateIsSingleUse(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	cbURL := b.Consent(b.StartLogin("alice.test", ""), "alice.test")
	if r := b.Get(cbURL); r.Status != http.StatusFound {
		t.Fatalf("first callback: %d %s", r.Status, r.Body)
	}
	wantFlowError(t, b.Get(cbURL), http.StatusBadRequest, ginoauth.CodeUnknownState)
	if st := a.as.Stats(); st.CodeGrants != 1 || st.CodeReplays != 0 {
		t.Fatalf("the replayed code must never reach the token endpoint: %+v", st)
	}
	if n := a.Client.Callbacks.Load(); n != 1 {
		t.Fatalf("the Manager must consume the flow record itself, not rely on the client: %d callbacks", n)
	}
}

// Login CSRF: a callback is accepted only from the browser that started the
// flow, so an attacker cannot log a victim into the attacker's account.
func TestCallbackRequiresTheBrowserThatStarted(t *testing.T) {
	a := newTestApp(t, nil)
	attacker, victim := a.NewBrowser(), a.NewBrowser()
	cbURL := attacker.Consent(attacker.StartLogin("bob.test", ""), "bob.test")

	victim.StartLogin("alice.test", "") // the victim even has a flow cookie of its own
	wantFlowError(t, victim.Get(cbURL), http.StatusBadRequest, ginoauth.CodeBrowserMismatch)
	if victim.Cookie("sid") != nil {
		t.Fatal("the victim must not get a session")
	}
	if r := victim.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("victim is logged in as the attacker: %s", r.Body)
	}
	if st := a.as.Stats(); st.CodeGrants != 0 || a.Client.Callbacks.Load() != 0 {
		t.Fatalf("the planted code must not be exchanged: %+v", st)
	}

	fresh := a.NewBrowser() // no flow cookie at all
	cb2 := attacker.Consent(attacker.StartLogin("bob.test", ""), "bob.test")
	wantFlowError(t, fresh.Get(cb2), http.StatusBadRequest, ginoauth.CodeBrowserMismatch)
}

// The authorization response must come from the issuer the flow started with.
func TestCallbackRejectsWrongIssuer(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	cb, _ := url.Parse(b.Consent(b.StartLogin("alice.test", ""), "alice.test"))
	q := cb.Query()
	if q.Get("iss") != "https://pds.test" {
		t.Fatalf("server should send iss: %v", q)
	}
	q.Set("iss", "https://evil.test")
	cb.RawQuery = q.Encode()
	wantFlowError(t, b.Get(cb.String()), http.StatusBadRequest, ginoauth.CodeExchangeFailed)
	if b.Cookie("sid") != nil || a.as.Stats().CodeGrants != 0 {
		t.Fatal("a response from the wrong issuer must not create a session or spend the code")
	}
}

// A denied authorization ends the flow with a clear error, after state is
// checked: an error ginoauthtest.Response with an unknown state is just an unknown state.
func TestCallbackErrorParameter(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	denied, err := a.as.Consent(t.Context(), b.StartLogin("alice.test", ""), "alice.test", false)
	if err != nil {
		t.Fatal(err)
	}
	wantFlowError(t, b.Get(denied), http.StatusBadRequest, ginoauth.CodeAccessDenied)
	wantFlowError(t, b.Get("/oauth/callback?state=nope&error=access_denied&iss=https://pds.test"), http.StatusBadRequest, ginoauth.CodeUnknownState)
	r := b.Do(http.MethodGet, "/oauth/callback?state=nope&error=access_denied", nil, http.Header{"Accept": {"text/html"}})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "<h1>Login failed</h1>") {
		t.Fatalf("browsers should get a readable error page: %d %s", r.Status, r.Body)
	}
}

// Session fixation: whatever session cookie the browser had before login, the
// one after is new, and the planted one does not lead to the new session.
func TestLoginRotatesSessionID(t *testing.T) {
	a := newTestApp(t, nil)
	attacker := a.NewBrowser()
	attacker.Login("bob.test", "")
	planted := attacker.Cookie("sid")

	victim := a.NewBrowser()
	victim.SetCookie(&http.Cookie{Name: "sid", Value: planted.Value})
	if r := victim.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	after := victim.Cookie("sid")
	if after == nil || after.Value == planted.Value {
		t.Fatal("the session cookie must change at login")
	}
	if r := a.WithCookie(http.MethodGet, "/api/session", planted.Value); r.Status == http.StatusOK && r.JSON(t)["did"] == a.alice.DID.String() {
		t.Fatal("the planted cookie leads to the victim's session")
	}
	if r := victim.Get("/api/session"); r.JSON(t)["did"] != a.alice.DID.String() {
		t.Fatalf("victim should be alice: %s", r.Body)
	}
	if s := a.as.Sessions("bob.test"); len(s) != 1 || s[0].EndReason != "revoked" {
		t.Fatalf("the replaced session's tokens must be revoked: %+v", s)
	}

	garbage := a.NewBrowser()
	garbage.SetCookie(&http.Cookie{Name: "sid", Value: "attacker-chosen-value"})
	garbage.Login("alice.test", "")
	if c := garbage.Cookie("sid"); c == nil || c.Value == "attacker-chosen-value" {
		t.Fatal("an attacker-chosen cookie must be replaced at login")
	}
}

// Open redirects: the return path is checked after parsing; every payload
// lands on "/".
func TestReturnPathOpenRedirectPayloads(t *testing.T) {
	a := newTestApp(t, nil)
	payloads := []string{
		"//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example/x",
		"/%2F%2Fevil.example", "/%5Cevil.example", "javascript:alert(1)", "/\t/evil.example",
		"http:evil.example", "////evil.example",
	}
	for _, p := range payloads {
		b := a.NewBrowser()
		r := b.Login("alice.test", p)
		if r.Status != http.StatusFound || r.Header.Get("Location") != "/" {
			t.Errorf("redirect=%q: want 302 to /, got %d %q", p, r.Status, r.Header.Get("Location"))
		}
	}
	b := a.NewBrowser()
	if r := b.Login("alice.test", "/settings?x=1#y"); r.Header.Get("Location") != "/settings?x=1#y" {
		t.Fatalf("a safe return path must be kept, got %q", r.Header.Get("Location"))
	}
}

// A tampered or foreign cookie is anonymous (401), never an error or a panic.
func TestTamperedCookieIsRejected(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	good := b.Cookie("sid").Value
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	for _, i := range []int{0, 12, len(raw) / 2, len(raw) - 1} {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x80
		r := a.WithCookie(http.MethodGet, "/api/session", base64.RawURLEncoding.EncodeToString(bad))
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("byte %d flipped: want 401, got %d %s", i, r.Status, r.Body)
		}
		if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), ";"), "Max-Age=0") {
			t.Fatal("a rejected cookie should be cleared")
		}
	}
	flipped := "A" + good[1:]
	if good[0] == 'A' {
		flipped = "B" + good[1:]
	}
	if r := a.WithCookie(http.MethodGet, "/api/whoami", flipped); r.Status != http.StatusUnauthorized || r.JSON(t)["code"] != string(ginoauth.CodeInvalidCookie) {
		t.Fatalf("a tampered cookie should be reported as invalid_cookie: %d %s", r.Status, r.Body)
	}
	for _, v := range []string{"", "x", strings.Repeat("A", 8000), good + "A", "%%%"} {
		if r := a.WithCookie(http.MethodGet, "/api/session", v); r.Status != http.StatusUnauthorized {
			t.Fatalf("cookie %.12q: want 401, got %d", v, r.Status)
		}
	}
	if r := a.WithCookie(http.MethodGet, "/api/session", good); r.Status != http.StatusOK {
		t.Fatalf("the untampered cookie must still work: %d", r.Status)
	}
}

// Lifetimes are enforced on the server: replaying the cookie after
// SessionTTL unused, or after MaxSessionAge however used, fails even though
// the client ignored Max-Age.
func TestSessionExpires(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.SessionTTL = time.Hour })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	a.Clock.Advance(59 * time.Minute)
	if r := a.WithCookie(http.MethodGet, "/api/session", sid); r.Status != http.StatusOK {
		t.Fatalf("session should live for SessionTTL: %d", r.Status)
	}
	a.Clock.Advance(50 * time.Minute) // used at 59 minutes: extended to 119
	if r := a.WithCookie(http.MethodGet, "/api/session", sid); r.Status != http.StatusOK {
		t.Fatalf("a use extends the session by SessionTTL: %d %s", r.Status, r.Body)
	}
	a.Clock.Advance(61 * time.Minute) // used at 109, extended to 169: now unused for more than an hour
	if r := a.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusUnauthorized || r.JSON(t)["code"] != string(ginoauth.CodeSessionExpired) {
		t.Fatalf("session must end after SessionTTL unused, and the app should learn why: %d %s", r.Status, r.Body)
	}
	if r := a.WithCookie(http.MethodGet, "/api/session", sid); r.Status != http.StatusUnauthorized {
		t.Fatalf("an ended session stays ended: %d %s", r.Status, r.Body)
	}

	capped := newTestApp(t, nil, func(c *ginoauth.Config) { c.MaxSessionAge = time.Hour })
	b = capped.NewBrowser()
	b.Login("alice.test", "")
	sid = b.Cookie("sid").Value
	for i := 0; i < 2; i++ { // used every 25 minutes
		capped.Clock.Advance(25 * time.Minute)
		if r := capped.WithCookie(http.MethodGet, "/api/session", sid); r.Status != http.StatusOK {
			t.Fatalf("within MaxSessionAge: %d", r.Status)
		}
	}
	capped.Clock.Advance(11 * time.Minute) // 61 minutes after the login
	if r := capped.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusUnauthorized || r.JSON(t)["code"] != string(ginoauth.CodeSessionExpired) {
		t.Fatalf("MaxSessionAge caps a login however it is used: %d %s", r.Status, r.Body)
	}
}

func TestIdleTimeout(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.IdleTimeout = 10 * time.Minute })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	for i := 0; i < 3; i++ { // activity keeps it alive well past one IdleTimeout
		a.Clock.Advance(8 * time.Minute)
		if r := b.Get("/api/session"); r.Status != http.StatusOK {
			t.Fatalf("active session ended after %d activity periods: %d", i+1, r.Status)
		}
	}
	a.Clock.Advance(11 * time.Minute)
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("idle session must end: %d %s", r.Status, r.Body)
	}
}

// A storage outage is a 503 for requests that need storage, never a silent
// logout; anonymous requests still work; nothing is lost when it comes back.
func TestStorageOutageIs503(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")

	a.Store.Down.Store(true)
	for _, path := range []string{"/api/session", "/dashboard", "/api/pds-session"} {
		r := b.Get(path)
		if r.Status != http.StatusServiceUnavailable || r.JSON(t)["code"] != "storage_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s during an outage: want 503 storage_unavailable, got %d %s", path, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), "injected fault") {
			t.Fatal("internal error text leaked into the response")
		}
	}
	if r := a.NewBrowser().Get("/dashboard"); r.Status != http.StatusOK || string(r.Body) != "anonymous" {
		t.Fatalf("anonymous requests must not depend on storage: %d %s", r.Status, r.Body)
	}
	if r := a.NewBrowser().Get("/login?handle=alice.test"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("a login that cannot store its flow must fail with 503, got %d %s", r.Status, r.Body)
	}
	if r := b.PostForm("/api/logout", nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("logout during an outage must not pretend to succeed: %d", r.Status)
	}

	a.Store.Down.Store(false)
	if r := b.Get("/api/session"); r.Status != http.StatusOK || r.JSON(t)["did"] != a.alice.DID.String() {
		t.Fatalf("after the outage the session must be intact: %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("after the outage PDS calls must work: %d %s", r.Status, r.Body)
	}
}

func TestLoginBadInput(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	for _, h := range []string{"", "   ", "not a handle!", "alice", strings.Repeat("a", 5000) + ".test", "did:nope", "@", "alice..test"} {
		r := b.Get("/login?handle=" + url.QueryEscape(h))
		if r.Status != http.StatusBadRequest || r.JSON(t)["error"] == "" {
			t.Errorf("handle %.20q: want 400 with an error, got %d %s", h, r.Status, r.Body)
		}
	}
	wantFlowError(t, b.Get("/login?handle=nobody.test"), http.StatusBadRequest, ginoauth.CodeResolveFailed)
	wantFlowError(t, b.PostForm("/login", url.Values{"handle": {strings.Repeat("x", 20000)}}), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	if r := b.PostForm("/login", url.Values{"handle": {"alice.test"}, "redirect": {"/after"}}); r.Status != http.StatusFound {
		t.Fatalf("POST /login with a form: want 302, got %d %s", r.Status, r.Body)
	}
	wantFlowError(t, b.Get("/oauth/callback"), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	wantFlowError(t, b.Get("/oauth/callback?state="+strings.Repeat("s", 600)), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	if st := a.as.Stats(); st.PARs != 1 {
		t.Fatalf("invalid handles must be refused before any network call: %+v", st)
	}
}

// Two logins started in two tabs share one flow binding, and a completed
// login spends it: the flow cookie is cleared, so the other tab's login
// must start again (it is refused as from another browser, and its flow
// record is not used up).
func TestCompletedLoginSpendsTheFlowCookie(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	first := b.StartLogin("alice.test", "/one")
	binding := b.Cookie("sid_flow").Value
	second := b.StartLogin("alice.test", "/two")
	r := b.Get(b.Consent(second, "alice.test"))
	if r.Header.Get("Location") != "/two" {
		t.Fatalf("second tab: %d %s", r.Status, r.Body)
	}
	if b.Cookie("sid_flow") != nil || !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), "\n"), "sid_flow=;") {
		t.Fatalf("the flow cookie must be cleared after a completed login: %v", r.Header.Values("Set-Cookie"))
	}
	callback := b.Consent(first, "alice.test")
	wantFlowError(t, b.Get(callback), http.StatusBadRequest, ginoauth.CodeBrowserMismatch)
	b.SetCookie(&http.Cookie{Name: "sid_flow", Value: binding})
	if r := b.Get(callback); r.Header.Get("Location") != "/one" {
		t.Fatalf("with its binding, the first tab's login is still there to complete: %d %s", r.Status, r.Body)
	}
}

// Sessions are per device: logging out on one leaves the other logged in.
func TestSessionsArePerDevice(t *testing.T) {
	a := newTestApp(t, nil)
	laptop, phone := a.NewBrowser(), a.NewBrowser()
	laptop.Login("alice.test", "")
	phone.Login("alice.test", "")
	if len(a.as.Sessions("alice.test")) != 2 {
		t.Fatal("each device should have its own OAuth session")
	}
	laptop.PostForm("/api/logout", nil)
	if r := laptop.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatal("laptop should be logged out")
	}
	if r := phone.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("phone must stay logged in with working tokens: %d %s", r.Status, r.Body)
	}
}

// Logs, ours and indigo's (through slog.Default), at debug level, never hold
// tokens, DPoP keys, cookie values or raw session ids.
func TestLogsHoldNoSecrets(t *testing.T) {
	var ours, global apptest.LogBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&global, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&ours, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	b := a.NewBrowser()
	authURL := b.StartLogin("alice.test", "")
	flow := b.Cookie("sid_flow").Value
	b.Get(b.Consent(authURL, "alice.test"))
	sid := b.Cookie("sid").Value
	who := b.Get("/api/whoami").JSON(t)
	stored, err := a.Client.Store().GetSession(t.Context(), a.alice.DID, who["oauthSessionID"].(string))
	if err != nil {
		t.Fatal(err)
	}
	a.as.ExpireAccessTokens()
	b.Get("/api/pds-session") // refresh
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	opened, err := a.Manager.CookieStore().Get(req, "sid")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"raw session id": opened.Values["sid"].(string),
		"session cookie": sid, "flow cookie": flow, "DPoP key": stored.DPoPPrivateKeyMultibase,
	}
	for i, s := range a.as.Sessions("alice.test") {
		secrets[fmt.Sprint("access token ", i)] = s.AccessToken
		secrets[fmt.Sprint("refresh token ", i)] = s.RefreshToken
	}
	secrets["first access token"] = stored.AccessToken
	secrets["first refresh token"] = stored.RefreshToken
	b.PostForm("/api/logout", nil)
	a.WithCookie(http.MethodGet, "/api/session", "garbage-cookie-value-0123456789")

	if !strings.Contains(ours.String(), "session started") {
		t.Fatalf("the Manager's logger received nothing: %q", ours.String())
	}
	for name, secret := range secrets {
		if secret == "" {
			continue
		}
		if strings.Contains(ours.String(), secret) || strings.Contains(global.String(), secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
	if strings.Contains(ours.String(), who["oauthSessionID"].(string)) {
		t.Error("the Manager's logs contain the raw OAuth session id")
	}
}

// Config.ErrorHandler decides how failures look (here: HTML for form posts),
// with the safe message and the status the library chose.
func TestErrorHandlerRendersFailures(t *testing.T) {
	var seen []ginoauth.ErrorResponse
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.ErrorHandler = func(c *gin.Context, e ginoauth.ErrorResponse) {
			seen = append(seen, e)
			c.Data(e.Status, "text/html; charset=utf-8", []byte("<p>"+html.EscapeString(e.Message)+"</p>"))
		}
	})
	b := a.NewBrowser()
	r := b.PostForm("/login", url.Values{"handle": {"not a handle"}})
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(string(r.Body), "<p>that is not a valid handle") {
		t.Fatalf("want the app's HTML error page, got %d %s", r.Status, r.Body)
	}
	b.Login("alice.test", "")
	a.Store.Down.Store(true)
	if r := b.Get("/dashboard"); r.Status != http.StatusServiceUnavailable || !strings.HasPrefix(string(r.Body), "<p>") {
		t.Fatalf("middleware failures must go through the ErrorHandler too: %d %s", r.Status, r.Body)
	}
	if len(seen) != 2 || seen[0].Code != ginoauth.CodeInvalidHandle || seen[1].Code != "storage_unavailable" || seen[1].Err == nil {
		t.Fatalf("unexpected error responses: %+v", seen)
	}
}
