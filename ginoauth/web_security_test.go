package ginoauth_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

func wantFlowError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d (%s), got %d: %s", status, code, r.status, r.body)
	}
	if got := r.json(t)["code"]; got != code {
		t.Fatalf("want code %q, got %v (%s)", code, got, r.body)
	}
}

// The callback URL (code + state) works once: a replay finds no flow record.
func TestCallbackStateIsSingleUse(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	cbURL := b.consent(b.startLogin("alice.test", ""), "alice.test")
	if r := b.get(cbURL); r.status != http.StatusFound {
		t.Fatalf("first callback: %d %s", r.status, r.body)
	}
	wantFlowError(t, b.get(cbURL), http.StatusBadRequest, ginoauth.FlowUnknownState)
	if st := a.as.Stats(); st.CodeGrants != 1 || st.CodeReplays != 0 {
		t.Fatalf("the replayed code must never reach the token endpoint: %+v", st)
	}
	if n := a.client.callbacks.Load(); n != 1 {
		t.Fatalf("the Manager must consume the flow record itself, not rely on the client: %d callbacks", n)
	}
}

// Login CSRF: a callback is accepted only from the browser that started the
// flow, so an attacker cannot log a victim into the attacker's account.
func TestCallbackRequiresTheBrowserThatStarted(t *testing.T) {
	a := newTestApp(t, nil)
	attacker, victim := a.newBrowser(), a.newBrowser()
	cbURL := attacker.consent(attacker.startLogin("bob.test", ""), "bob.test")

	victim.startLogin("alice.test", "") // the victim even has a flow cookie of its own
	wantFlowError(t, victim.get(cbURL), http.StatusBadRequest, ginoauth.FlowBrowserMismatch)
	if victim.cookie("sid") != nil {
		t.Fatal("the victim must not get a session")
	}
	if r := victim.get("/api/session"); r.status != http.StatusUnauthorized {
		t.Fatalf("victim is logged in as the attacker: %s", r.body)
	}
	if st := a.as.Stats(); st.CodeGrants != 0 || a.client.callbacks.Load() != 0 {
		t.Fatalf("the planted code must not be exchanged: %+v", st)
	}

	fresh := a.newBrowser() // no flow cookie at all
	cb2 := attacker.consent(attacker.startLogin("bob.test", ""), "bob.test")
	wantFlowError(t, fresh.get(cb2), http.StatusBadRequest, ginoauth.FlowBrowserMismatch)
}

// The authorization response must come from the issuer the flow started with.
func TestCallbackRejectsWrongIssuer(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	cb, _ := url.Parse(b.consent(b.startLogin("alice.test", ""), "alice.test"))
	q := cb.Query()
	if q.Get("iss") != "https://pds.test" {
		t.Fatalf("server should send iss: %v", q)
	}
	q.Set("iss", "https://evil.test")
	cb.RawQuery = q.Encode()
	wantFlowError(t, b.get(cb.String()), http.StatusBadRequest, ginoauth.FlowExchangeFailed)
	if b.cookie("sid") != nil || a.as.Stats().CodeGrants != 0 {
		t.Fatal("a response from the wrong issuer must not create a session or spend the code")
	}
}

// A denied authorization ends the flow with a clear error, after state is
// checked: an error response with an unknown state is just an unknown state.
func TestCallbackErrorParameter(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	denied, err := a.as.Consent(t.Context(), b.startLogin("alice.test", ""), "alice.test", false)
	if err != nil {
		t.Fatal(err)
	}
	wantFlowError(t, b.get(denied), http.StatusBadRequest, ginoauth.FlowDenied)
	wantFlowError(t, b.get("/oauth/callback?state=nope&error=access_denied&iss=https://pds.test"), http.StatusBadRequest, ginoauth.FlowUnknownState)
	r := b.do(http.MethodGet, "/oauth/callback?state=nope&error=access_denied", nil, http.Header{"Accept": {"text/html"}})
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "<h1>Login failed</h1>") {
		t.Fatalf("browsers should get a readable error page: %d %s", r.status, r.body)
	}
}

// Session fixation: whatever session cookie the browser had before login, the
// one after is new, and the planted one does not lead to the new session.
func TestLoginRotatesSessionID(t *testing.T) {
	a := newTestApp(t, nil)
	attacker := a.newBrowser()
	attacker.login("bob.test", "")
	planted := attacker.cookie("sid")

	victim := a.newBrowser()
	victim.setCookie(&http.Cookie{Name: "sid", Value: planted.Value})
	if r := victim.login("alice.test", ""); r.status != http.StatusFound {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	after := victim.cookie("sid")
	if after == nil || after.Value == planted.Value {
		t.Fatal("the session cookie must change at login")
	}
	if r := a.withCookie(http.MethodGet, "/api/session", planted.Value); r.status == http.StatusOK && r.json(t)["did"] == a.alice.DID.String() {
		t.Fatal("the planted cookie leads to the victim's session")
	}
	if r := victim.get("/api/session"); r.json(t)["did"] != a.alice.DID.String() {
		t.Fatalf("victim should be alice: %s", r.body)
	}

	garbage := a.newBrowser()
	garbage.setCookie(&http.Cookie{Name: "sid", Value: "attacker-chosen-value"})
	garbage.login("alice.test", "")
	if c := garbage.cookie("sid"); c == nil || c.Value == "attacker-chosen-value" {
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
		b := a.newBrowser()
		r := b.login("alice.test", p)
		if r.status != http.StatusFound || r.header.Get("Location") != "/" {
			t.Errorf("redirect=%q: want 302 to /, got %d %q", p, r.status, r.header.Get("Location"))
		}
	}
	b := a.newBrowser()
	if r := b.login("alice.test", "/settings?x=1#y"); r.header.Get("Location") != "/settings?x=1#y" {
		t.Fatalf("a safe return path must be kept, got %q", r.header.Get("Location"))
	}
}

// A tampered or foreign cookie is anonymous (401), never an error or a panic.
func TestTamperedCookieIsRejected(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	b.login("alice.test", "")
	good := b.cookie("sid").Value
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	for _, i := range []int{0, 12, len(raw) / 2, len(raw) - 1} {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0x80
		r := a.withCookie(http.MethodGet, "/api/session", base64.RawURLEncoding.EncodeToString(bad))
		if r.status != http.StatusUnauthorized {
			t.Fatalf("byte %d flipped: want 401, got %d %s", i, r.status, r.body)
		}
		if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "Max-Age=0") {
			t.Fatal("a rejected cookie should be cleared")
		}
	}
	for _, v := range []string{"", "x", strings.Repeat("A", 8000), good + "A", "%%%"} {
		if r := a.withCookie(http.MethodGet, "/api/session", v); r.status != http.StatusUnauthorized {
			t.Fatalf("cookie %.12q: want 401, got %d", v, r.status)
		}
	}
	if r := a.withCookie(http.MethodGet, "/api/session", good); r.status != http.StatusOK {
		t.Fatalf("the untampered cookie must still work: %d", r.status)
	}
}

// The absolute lifetime is enforced on the server: replaying the cookie after
// SessionTTL fails even though the client ignored Max-Age.
func TestSessionExpires(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.SessionTTL = time.Hour })
	b := a.newBrowser()
	b.login("alice.test", "")
	sid := b.cookie("sid").Value
	a.clock.Advance(59 * time.Minute)
	if r := a.withCookie(http.MethodGet, "/api/session", sid); r.status != http.StatusOK {
		t.Fatalf("session should live for SessionTTL: %d", r.status)
	}
	a.clock.Advance(2 * time.Minute)
	if r := a.withCookie(http.MethodGet, "/api/session", sid); r.status != http.StatusUnauthorized {
		t.Fatalf("session must end after SessionTTL: %d %s", r.status, r.body)
	}
}

func TestIdleTimeout(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.IdleTimeout = 10 * time.Minute })
	b := a.newBrowser()
	b.login("alice.test", "")
	for i := 0; i < 3; i++ { // activity keeps it alive well past one IdleTimeout
		a.clock.Advance(8 * time.Minute)
		if r := b.get("/api/session"); r.status != http.StatusOK {
			t.Fatalf("active session ended after %d activity periods: %d", i+1, r.status)
		}
	}
	a.clock.Advance(11 * time.Minute)
	if r := b.get("/api/session"); r.status != http.StatusUnauthorized {
		t.Fatalf("idle session must end: %d %s", r.status, r.body)
	}
}

// A storage outage is a 503 for requests that need storage, never a silent
// logout; anonymous requests still work; nothing is lost when it comes back.
func TestStorageOutageIs503(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	b.login("alice.test", "")

	a.store.down.Store(true)
	for _, path := range []string{"/api/session", "/dashboard", "/api/pds-session"} {
		r := b.get(path)
		if r.status != http.StatusServiceUnavailable || r.json(t)["code"] != "storage_unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("%s during an outage: want 503 storage_unavailable, got %d %s", path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "injected fault") {
			t.Fatal("internal error text leaked into the response")
		}
	}
	if r := a.newBrowser().get("/dashboard"); r.status != http.StatusOK || string(r.body) != "anonymous" {
		t.Fatalf("anonymous requests must not depend on storage: %d %s", r.status, r.body)
	}
	if r := a.newBrowser().get("/login?handle=alice.test"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a login that cannot store its flow must fail with 503, got %d %s", r.status, r.body)
	}
	if r := b.postForm("/api/logout", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("logout during an outage must not pretend to succeed: %d", r.status)
	}

	a.store.down.Store(false)
	if r := b.get("/api/session"); r.status != http.StatusOK || r.json(t)["did"] != a.alice.DID.String() {
		t.Fatalf("after the outage the session must be intact: %d %s", r.status, r.body)
	}
	if r := b.get("/api/pds-session"); r.status != http.StatusOK {
		t.Fatalf("after the outage PDS calls must work: %d %s", r.status, r.body)
	}
}

func TestLoginBadInput(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	for _, h := range []string{"", "   ", "not a handle!", "alice", strings.Repeat("a", 5000) + ".test", "did:nope", "@", "alice..test"} {
		r := b.get("/login?handle=" + url.QueryEscape(h))
		if r.status != http.StatusBadRequest || r.json(t)["error"] == "" {
			t.Errorf("handle %.20q: want 400 with an error, got %d %s", h, r.status, r.body)
		}
	}
	wantFlowError(t, b.get("/login?handle=nobody.test"), http.StatusBadRequest, ginoauth.FlowResolveFailed)
	wantFlowError(t, b.postForm("/login", url.Values{"handle": {strings.Repeat("x", 20000)}}), http.StatusBadRequest, ginoauth.FlowInvalidRequest)
	if r := b.postForm("/login", url.Values{"handle": {"alice.test"}, "redirect": {"/after"}}); r.status != http.StatusFound {
		t.Fatalf("POST /login with a form: want 302, got %d %s", r.status, r.body)
	}
	wantFlowError(t, b.get("/oauth/callback"), http.StatusBadRequest, ginoauth.FlowInvalidRequest)
	wantFlowError(t, b.get("/oauth/callback?state="+strings.Repeat("s", 600)), http.StatusBadRequest, ginoauth.FlowInvalidRequest)
	if st := a.as.Stats(); st.PARs != 1 {
		t.Fatalf("invalid handles must be refused before any network call: %+v", st)
	}
}

// Two logins started in two tabs of one browser both complete.
func TestTwoTabsOneBrowser(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.newBrowser()
	first := b.startLogin("alice.test", "/one")
	second := b.startLogin("alice.test", "/two")
	if r := b.get(b.consent(second, "alice.test")); r.header.Get("Location") != "/two" {
		t.Fatalf("second tab: %d %s", r.status, r.body)
	}
	if r := b.get(b.consent(first, "alice.test")); r.header.Get("Location") != "/one" {
		t.Fatalf("first tab: %d %s", r.status, r.body)
	}
}

// Sessions are per device: logging out on one leaves the other logged in.
func TestSessionsArePerDevice(t *testing.T) {
	a := newTestApp(t, nil)
	laptop, phone := a.newBrowser(), a.newBrowser()
	laptop.login("alice.test", "")
	phone.login("alice.test", "")
	if len(a.as.Sessions("alice.test")) != 2 {
		t.Fatal("each device should have its own OAuth session")
	}
	laptop.postForm("/api/logout", nil)
	if r := laptop.get("/api/session"); r.status != http.StatusUnauthorized {
		t.Fatal("laptop should be logged out")
	}
	if r := phone.get("/api/pds-session"); r.status != http.StatusOK {
		t.Fatalf("phone must stay logged in with working tokens: %d %s", r.status, r.body)
	}
}
