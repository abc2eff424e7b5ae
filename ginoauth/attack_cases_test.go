package ginoauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// The attack cases of issue 19 (attacks_test.go lists them): what each
// sends and what it must get.

// mobileInstance starts another instance of a's app, on a's store, with
// the native-app flow on (and more configuration). Its callback is its own
// (loopback clients are one client whatever the port).
func mobileInstance(t *testing.T, a *testApp, configure ...func(*ginoauth.Config)) *testApp {
	t.Helper()
	return startApp(t, a.as, func(o *apptest.Options) {
		o.Storage = a.Store.Store
		o.Configure = func(c *ginoauth.Config) {
			c.Mobile.RedirectURIs = []string{appRedirect}
			for _, f := range configure {
				f(c)
			}
		}
	})
}

func attackConcurrentRotation(t *testing.T, a *testApp) {
	stores := testdb.Handles(t, "memory", 3)
	apps := rotationCluster(t, stores)
	rotationRounds(t, apps, 2, 50, func(round int) (remove []func()) {
		if round == 1 { // a database refusal at the save, on every instance
			for _, app := range apps {
				remove = append(remove, app.Store.Fail(apptest.OpSet, "sess:", 2))
			}
		}
		return remove
	})
}

func attackOriginHeaders(t *testing.T, _ *testApp) {
	o := newOriginApp(t)
	for _, viaProxy := range []bool{false, true} {
		for _, bh := range browserHeaders {
			st, body := o.send(t, viaProxy, http.MethodPost, "/app/act", "", bh.header)
			refused := st == http.StatusForbidden && strings.Contains(body, `"cross_site_request"`)
			if refused == bh.pass || (bh.pass && st != http.StatusOK) {
				t.Errorf("proxy %v, %s: %d %s; want it to pass: %v", viaProxy, bh.name, st, body, bh.pass)
			}
		}
	}
}

func attackPostQuery(t *testing.T, a *testApp) {
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-origin"}}
	b := a.NewBrowser()
	for _, body := range []string{"", "redirect=%2Fx", "handle="} {
		r := b.Do(http.MethodPost, "/login?handle=alice.test&server=pds.test", strings.NewReader(body), form)
		wantCode(t, r, http.StatusBadRequest, ginoauth.CodeInvalidHandle)
	}
	if st := a.as.Stats(); st.PARs != 0 {
		t.Fatalf("a login from query parameters of a POST reached the server: %+v", st)
	}
	b.Login("alice.test", "")
	pars := a.as.Stats().PARs
	r := b.Do(http.MethodPost, "/login/upgrade?scope=transition:generic&redirect=%2Fx", strings.NewReader(""), form)
	wantCode(t, r, http.StatusBadRequest, ginoauth.CodeInvalidScope)
	if a.as.Stats().PARs != pars {
		t.Fatal("a step-up from query parameters of a POST reached the server")
	}
	ref := listSessions(t, b)[0]["ref"].(string)
	r = b.Do(http.MethodPost, "/api/sessions/end?ref="+url.QueryEscape(ref), strings.NewReader(""), form)
	wantCode(t, r, http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	if r := b.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatal("the session named in the query must not be ended")
	}
	h := form.Clone()
	h.Set("Accept", "text/html")
	if r := b.Do(http.MethodPost, "/api/logout?redirect=%2Fsettings", strings.NewReader(""), h); r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/" {
		t.Fatalf("logout took its redirect from the query: %d %q", r.Status, r.Header.Get("Location"))
	}
	// GET routes still read the query.
	if r := a.NewBrowser().Get("/login?handle=alice.test"); r.Status != http.StatusFound {
		t.Fatalf("GET /login: %d %s", r.Status, r.Body)
	}
}

// postRaw POSTs body with contentType ("" for none) to path.
func postRaw(t *testing.T, a *testApp, path, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.Server.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func attackDuplicateKeys(t *testing.T, a *testApp) {
	m := mobileInstance(t, a)
	app := newNativeApp(t, m)
	good := `"code_challenge":"` + s256(app.verifier) + `","code_challenge_method":"S256","redirect_uri":"` + appRedirect + `","state":"s"`
	for _, body := range []string{
		`{"handle":"alice.test","handle":"bob.test",` + good + `}`,
		`{"handle":"alice.test","Handle":"bob.test",` + good + `}`,
		`{"handle":"alice.test",` + good + `,"redirect_uri":"` + appRedirect + `"}`,
		`{"handle":"alice.test",` + good + `}{"handle":"bob.test"}`,
		`{"handle":["alice.test"],` + good + `}`,
	} {
		if st, out := postRaw(t, m, "/api/auth/mobile-start", "application/json", body); st != http.StatusBadRequest || out["code"] != "invalid_request" {
			t.Errorf("mobile-start %s: %d %v; want 400 invalid_request", body, st, out)
		}
	}
	for _, body := range []string{`{"code":"a","code":"b","code_verifier":"` + app.verifier + `","redirect_uri":"` + appRedirect + `"}`} {
		if st, out := postRaw(t, m, "/api/auth/mobile-token", "application/json", body); st != http.StatusBadRequest || out["code"] != "invalid_request" {
			t.Errorf("mobile-token %s: %d %v; want 400 invalid_request", body, st, out)
		}
	}
	if st := a.as.Stats(); st.PARs != 0 {
		t.Fatalf("an ambiguous body started a login: %+v", st)
	}
	if st, _ := postRaw(t, m, "/api/auth/mobile-start", "application/json; charset=utf-8", `{"handle":"alice.test",`+good+`}`); st != http.StatusOK {
		t.Fatalf("a well-formed body: %d", st)
	}
}

func attackSimpleRequest(t *testing.T, a *testApp) {
	m := mobileInstance(t, a)
	app := newNativeApp(t, m)
	start := `{"handle":"alice.test","code_challenge":"` + s256(app.verifier) + `","code_challenge_method":"S256","redirect_uri":"` + appRedirect + `","state":"s"}`
	for _, path := range []string{"/api/auth/mobile-start", "/api/auth/mobile-token"} {
		for _, ct := range []string{"text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
			if st, out := postRaw(t, m, path, ct, start); st != http.StatusUnsupportedMediaType || out["code"] != "unsupported_media_type" {
				t.Errorf("%s as %q: %d %v; want 415", path, ct, st, out)
			}
		}
	}
	if st := a.as.Stats(); st.PARs != 0 {
		t.Fatalf("a CORS-simple request started a login: %+v", st)
	}
}

func attackCodeReuse(t *testing.T, a *testApp) {
	events := &eventLog{}
	m := mobileInstance(t, a, func(c *ginoauth.Config) { c.OnEvent = events.add })
	for _, rotateFirst := range []bool{false, true} {
		app := newNativeApp(t, m)
		code := app.browserLogin(app.start("alice.test"), "alice.test")
		st, out, _ := app.redeem(code, app.verifier)
		if st != http.StatusOK {
			t.Fatalf("first redemption: %d %v", st, out)
		}
		token := out["session_token"].(string)
		if rotateFirst {
			if r := rotate(m, token, false); r.status == http.StatusOK {
				token = r.token
			} else {
				t.Fatalf("rotation: %+v", r)
			}
		}
		if st, out, _ := app.redeem(code, app.verifier); st != http.StatusBadRequest || out["code"] != "invalid_grant" || out["session_token"] != nil {
			t.Fatalf("second redemption: %d %v", st, out)
		}
		if st := bearerStatus(t, m, "/api/whoami", token); st != http.StatusUnauthorized {
			t.Fatalf("the token of the first exchange after the code came back (rotated %v): %d", rotateFirst, st)
		}
		if st := a.as.Stats(); st.ActiveSessions != 0 {
			t.Fatalf("the tokens of the first exchange must be revoked: %+v", st)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for events.count(ginoauth.EventSessionEnded, ginoauth.EndCodeReplayed) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := events.count(ginoauth.EventSessionEnded, ginoauth.EndCodeReplayed); n != 2 {
		t.Fatalf("%d code_replayed events; want 2", n)
	}
}

func attackTwoAuthorizations(t *testing.T, a *testApp) {
	m := mobileInstance(t, a)
	token := newNativeApp(t, m).login("alice.test")
	b := m.NewBrowser()
	b.Login("alice.test", "")
	for _, path := range []string{"/api/whoami", "/api/session", "/dashboard"} {
		for _, second := range []string{"Bearer " + strings.Repeat("A", 43), "Basic YTpi", "Bearer " + token} {
			r := b.Do(http.MethodGet, path, nil, http.Header{"Authorization": {"Bearer " + token, second}})
			wantCode(t, r, http.StatusBadRequest, ginoauth.CodeInvalidRequest)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, m.Server.URL+"/api/auth/mobile-refresh", nil)
	req.Header["Authorization"] = []string{"Bearer " + token, "Bearer " + strings.Repeat("B", 43)}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a rotation with two Authorization headers: %d", resp.StatusCode)
	}
	if r := rotate(m, token, false); r.status != http.StatusOK {
		t.Fatalf("the token must not have been rotated or harmed: %+v", r)
	}
}

// countingTransport counts the requests an app's OAuth client sends.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(req)
}

// loginNamesApp is an instance whose OAuth client may reach anything (and
// counts what it sends), with localDomains as Config.LocalDomains.
func loginNamesApp(t *testing.T, a *testApp, localDomains []string) (*testApp, *countingTransport) {
	counter := &countingTransport{base: a.as.HTTPClient().Transport}
	m := startApp(t, a.as, func(o *apptest.Options) {
		o.HTTPClient = &http.Client{Transport: counter}
		o.Configure = func(c *ginoauth.Config) {
			c.LocalDomains = localDomains
			c.Mobile.RedirectURIs = []string{appRedirect}
			c.RateLimits.Disabled = true // dozens of refused starts from one address
		}
	})
	return m, counter
}

func attackPrivateServers(t *testing.T, a *testApp) {
	m, counter := loginNamesApp(t, a, []string{"test"})
	b := m.NewBrowser()
	for _, server := range []string{
		"printer.internal", "nas.local", "dev.localhost", "router.home.arpa", "box.lan", "files.corp", "wiki.intranet",
		"intranet", "localhost", "127.0.0.1", "10.0.0.8", "[::1]", "https://169.254.169.254", "https://nas.local/", "pds.onion",
	} {
		wantCode(t, b.Get("/login?server="+url.QueryEscape(server)), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
		app := newNativeApp(t, m)
		body := map[string]string{"server": server, "code_challenge": s256(app.verifier), "code_challenge_method": "S256", "redirect_uri": appRedirect, "state": "s"}
		if st, out, _ := app.call(http.MethodPost, "/api/auth/mobile-start", body, ""); st != http.StatusBadRequest {
			t.Errorf("mobile-start at %s: %d %v", server, st, out)
		}
	}
	if n := counter.n.Load(); n != 0 {
		t.Fatalf("%d requests left the app for non-public servers; want none", n)
	}
	// The names the app lists stay allowed; unlisted, the test server is refused too.
	if r := b.Get("/login?server=pds.test"); r.Status != http.StatusFound {
		t.Fatalf("server=pds.test with LocalDomains test: %d %s", r.Status, r.Body)
	}
	only, counter := loginNamesApp(t, a, []string{"pds.test"})
	if r := only.NewBrowser().Get("/login?server=pds.test"); r.Status != http.StatusFound {
		t.Fatalf("server=pds.test with LocalDomains pds.test: %d %s", r.Status, r.Body)
	}
	before := counter.n.Load()
	unlisted, _ := loginNamesApp(t, a, nil)
	wantCode(t, unlisted.NewBrowser().Get("/login?server=pds.test"), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	wantCode(t, only.NewBrowser().Get("/login?server=other.test"), http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	if counter.n.Load() != before {
		t.Fatal("a refused name reached the network")
	}
}

func attackReservedHandles(t *testing.T, a *testApp) {
	m, counter := loginNamesApp(t, a, []string{"test"})
	b := m.NewBrowser()
	for _, h := range []string{
		"alice.local", "alice.internal", "x.onion", "handle.invalid", "a.localhost", "a.example", "a.alt", "a.arpa",
		"alice.home.arpa", "alice.lan", "alice.corp", "did:web:nas.local", "did:web:localhost%3A8080", "did:web:127.0.0.1",
	} {
		wantCode(t, b.Get("/login?handle="+url.QueryEscape(h)), http.StatusBadRequest, ginoauth.CodeInvalidHandle)
	}
	if n := counter.n.Load(); n != 0 || a.as.Stats().PARs != 0 {
		t.Fatalf("%d requests left the app for reserved names; want none", n)
	}
	unlisted, _ := loginNamesApp(t, a, nil)
	wantCode(t, unlisted.NewBrowser().Get("/login?handle=alice.test"), http.StatusBadRequest, ginoauth.CodeInvalidHandle)
	if r := b.Get("/login?handle=alice.test"); r.Status != http.StatusFound {
		t.Fatalf("a listed domain's handle: %d %s", r.Status, r.Body)
	}
}

// clientOnly hides the OAuth client's optional capabilities.
type clientOnly struct{ oauthclient.Client }

func attackAuthOnlyStorage(t *testing.T, a *testApp) {
	authOnly := func(c *ginoauth.Config) { c.AuthenticationOnly = true }
	m := mobileInstance(t, a, authOnly)
	// Any write of an OAuth session would fail: the logins must not try.
	m.Store.Fail(apptest.OpSet, "oauth:sess:", -1)
	b := m.NewBrowser()
	if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("an authentication-only login: %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatalf("its session: %d", r.Status)
	}
	token := newNativeApp(t, m).login("alice.test")
	if r := rotate(m, token, false); r.status != http.StatusOK {
		t.Fatalf("an authentication-only native login's rotation: %+v", r)
	}
	if st := a.as.Stats(); st.ActiveSessions != 0 || st.SessionsRevoked != 2 {
		t.Fatalf("the tokens must be revoked at once: %+v", st)
	}
	// A client without the Authenticator capability: Callback, then Revoke.
	plain := startApp(t, a.as, func(o *apptest.Options) {
		o.Configure = func(c *ginoauth.Config) {
			authOnly(c)
			c.OAuthClient = clientOnly{c.OAuthClient}
		}
	})
	pb := plain.NewBrowser()
	if r := pb.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("authentication only without the capability: %d %s", r.Status, r.Body)
	}
	if g := plain.Client.LastGrant(); g == nil {
		t.Fatal("the fallback must complete the callback")
	} else if _, err := plain.Client.Store().GetSession(context.Background(), a.alice.DID, g.OAuthSessionID); err == nil {
		t.Fatal("the fallback must delete the stored tokens")
	}
	if st := a.as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("the fallback must revoke the tokens: %+v", st)
	}
}

func attackNarrowedScopes(t *testing.T, _ *testApp) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	if err := as.PublishPermissionSet("com.example.authNotes", "repo:com.example.note", photoWrite); err != nil {
		t.Fatal(err)
	}
	allows := func(r *gin.Engine, m *ginoauth.Manager) {
		r.GET("/allows", ginoauth.RequireAuth(m), func(c *gin.Context) {
			u, _ := ginoauth.CurrentUser(c)
			c.JSON(http.StatusOK, gin.H{"photos": u.Allows(photoWrite), "notes": u.Allows("repo:com.example.note"), "scopes": u.Scopes})
		})
	}
	one := startApp(t, as, func(o *apptest.Options) { o.Scopes = declared; o.Routes = allows })
	two := startApp(t, as, func(o *apptest.Options) {
		o.Scopes, o.Routes, o.Storage = declared, allows, one.Store.Store
	})
	b := one.NewBrowser()
	b.Get(b.Consent(start(t, b, url.Values{"handle": {"alice.test"}, "scope": {notesSet}}), "alice.test"))
	sid := b.Cookie("sid").Value
	check := func(app *testApp, photos bool) {
		t.Helper()
		r := app.WithCookie(http.MethodGet, "/allows", sid)
		if got := r.JSON(t); r.Status != http.StatusOK || got["photos"] != photos || got["notes"] != true {
			t.Fatalf("/allows on %s: %d %v; want photos %v", app.Server.URL, r.Status, got, photos)
		}
	}
	check(one, true)
	check(two, true)
	if err := as.PublishPermissionSet("com.example.authNotes", "repo:com.example.note"); err != nil {
		t.Fatal(err)
	}
	as.ExpireAccessTokens()
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK { // refreshes: the set grants less now
		t.Fatalf("PDS call: %d %s", r.Status, r.Body)
	}
	check(one, false)
	check(two, false)
}

func attackCookieDomainTossing(t *testing.T, a *testApp) {
	victim, attacker := a.NewBrowser(), a.NewBrowser()
	victim.Login("alice.test", "")
	attacker.Login("bob.test", "")
	real, planted := victim.Cookie("sid").Value, attacker.Cookie("sid").Value
	for _, cookies := range []string{"sid=" + planted + "; sid=" + real, "sid=" + real + "; sid=" + planted} {
		r := a.NewBrowser().Do(http.MethodGet, "/api/whoami", nil, http.Header{"Cookie": {cookies}})
		if r.Status != http.StatusUnauthorized || r.JSON(t)["code"] != string(ginoauth.CodeInvalidCookie) || len(r.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("two valid session cookies: %d %s %v; want 401 invalid_cookie and nothing cleared", r.Status, r.Body, r.Header.Values("Set-Cookie"))
		}
	}
	// The same session twice (a cookie set before and after a domain
	// change) is not ambiguous.
	if r := a.NewBrowser().Do(http.MethodGet, "/api/whoami", nil, http.Header{"Cookie": {"sid=" + real + "; sid=" + real}}); r.Status != http.StatusOK {
		t.Fatalf("the same cookie twice: %d", r.Status)
	}
	// Setting CookieDomain is warned about at startup.
	var logs apptest.LogBuffer
	startApp(t, a.as, func(o *apptest.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Configure = func(c *ginoauth.Config) { c.CookieDomain = "app.example" }
	})
	if !strings.Contains(logs.String(), "CookieDomain shares the session cookie") {
		t.Fatalf("no warning about CookieDomain: %q", logs.String())
	}
}

// httpsApp is the app at https://app.example with CookieDomain
// app.example, served in process (handlers called with Host app.example),
// whose OAuth client reaches as.
func httpsApp(t *testing.T, as *ginoauthtest.Server) http.Handler {
	t.Helper()
	store := memstore.New()
	// A public client registered with as, as https://app.example serves it.
	cfg := oauth.NewPublicConfig("https://app.example/oauth-client-metadata.json", "https://app.example/oauth/callback", []string{"atproto"})
	if err := as.RegisterClient(cfg.ClientMetadata()); err != nil {
		t.Fatal(err)
	}
	client := indigoclient.New(cfg, store, indigoclient.Options{HTTPClient: as.HTTPClient(), Directory: as.Directory()})
	t.Cleanup(func() { _ = client.Close() })
	m, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32),
		BaseURL: "https://app.example", CookieDomain: "app.example", LocalDomains: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	r := gin.New()
	r.Use(ginoauth.Middleware(m))
	m.Mount(r)
	return r
}

func serveAt(h http.Handler, method, target, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://app.example"+target, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func attackPlantedFlowCookie(t *testing.T, a *testApp) {
	app := httpsApp(t, a.as)
	// The attacker starts a login for its own account in its own browser.
	w := serveAt(app, http.MethodGet, "/login?handle=bob.test", "")
	if w.Code != http.StatusFound {
		t.Fatalf("the attacker's login: %d %s", w.Code, w.Body)
	}
	var flow *http.Cookie
	for _, c := range w.Result().Cookies() {
		if strings.HasSuffix(c.Name, "_flow") {
			flow = c
		}
	}
	if flow == nil {
		t.Fatal("no flow cookie")
	}
	callback, err := a.as.Consent(context.Background(), w.Header().Get("Location"), "bob.test", true)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse(callback)
	// A sibling host can plant a cookie without the __Host- prefix, for the
	// whole domain: the attacker's binding, under the name the app used to
	// read. The victim then opens the attacker's callback URL.
	for _, planted := range []string{"sid_flow=" + flow.Value, "__Secure-sid_flow=" + flow.Value} {
		w := serveAt(app, http.MethodGet, "/oauth/callback?"+cb.RawQuery, planted)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), string(ginoauth.CodeBrowserMismatch)) {
			t.Fatalf("the victim's browser with a planted %q: %d %s; want 400 browser_mismatch", planted, w.Code, w.Body)
		}
	}
	if flow.Name != "__Host-sid_flow" || flow.Domain != "" || !flow.Secure || flow.Path != "/" {
		t.Fatalf("the flow cookie %+v: want __Host-sid_flow, host-only, Secure, Path=/ even with CookieDomain set", flow)
	}
	// The attacker's own browser, which holds the real cookie, completes it.
	if w := serveAt(app, http.MethodGet, "/oauth/callback?"+cb.RawQuery, flow.Name+"="+flow.Value); w.Code != http.StatusFound {
		t.Fatalf("the browser that started the login: %d %s", w.Code, w.Body)
	}
}

func attackLogoutCacheDelay(t *testing.T, a *testApp) {
	cache := func(c *ginoauth.Config) { c.SessionCacheTTL = 30 * time.Second }
	one := mobileInstance(t, a, cache)
	two := mobileInstance(t, a, cache)
	b := one.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	if st := onInstance(sid, two, "/api/whoami"); st != http.StatusOK {
		t.Fatalf("instance two: %d", st)
	}
	b.PostForm("/api/logout", nil)
	// Instance two's cache may still accept the cookie, for at most
	// SessionCacheTTL; but the tokens are revoked at once, so nothing
	// reaches the PDS, and finding that out ends it there too.
	if st := onInstance(sid, two, "/api/whoami"); st != http.StatusOK {
		t.Fatalf("instance two within SessionCacheTTL: %d (the documented delay is gone: update SECURITY.md)", st)
	}
	if st := onInstance(sid, two, "/api/pds-session"); st != http.StatusUnauthorized {
		t.Fatalf("a PDS call on instance two after the logout: %d", st)
	}
	if st := onInstance(sid, two, "/api/whoami"); st != http.StatusUnauthorized {
		t.Fatalf("instance two after it learned of the logout: %d", st)
	}
	// Without a PDS call, the cache entry ends with SessionCacheTTL.
	b.Login("alice.test", "")
	sid = b.Cookie("sid").Value
	onInstance(sid, two, "/api/whoami")
	b.PostForm("/api/logout", nil)
	two.Clock.Advance(30 * time.Second)
	if st := onInstance(sid, two, "/api/whoami"); st != http.StatusUnauthorized {
		t.Fatalf("instance two after SessionCacheTTL: %d", st)
	}
	// A native app's token is never rotated from a stale cache.
	app := newNativeApp(t, one)
	token := app.login("alice.test")
	if st := bearerStatus(t, two, "/api/whoami", token); st != http.StatusOK {
		t.Fatalf("the token on instance two: %d", st)
	}
	app.call(http.MethodPost, "/api/logout", nil, token)
	if r := rotate(two, token, false); r.status != http.StatusUnauthorized {
		t.Fatalf("rotating a logged-out token on a stale instance: %+v", r)
	}
}

func attackAttackerStartedNativeFlow(t *testing.T, a *testApp) {
	var logs apptest.LogBuffer
	events := &eventLog{}
	m := startApp(t, a.as, func(o *apptest.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Configure = func(c *ginoauth.Config) {
			c.Mobile.RedirectURIs = []string{appRedirect}
			c.OnEvent = events.add
		}
	})
	if !strings.Contains(logs.String(), "private-use scheme") {
		t.Fatalf("no warning about the private-use scheme at startup: %q", logs.String())
	}
	victim := m.NewBrowser()
	victim.Login("alice.test", "")
	// The attacker starts the flow (with its own PKCE pair) and sends the
	// authorization URL to the victim; the victim logs in; the redirect
	// lands in the attacker's app, which claimed the scheme. PKCE cannot
	// tell: the documented limit of private-use schemes.
	attacker := newNativeApp(t, m)
	code := attacker.browserLogin(attacker.start("alice.test"), "alice.test")
	st, out, _ := attacker.redeem(code, attacker.verifier)
	if st != http.StatusOK {
		t.Fatalf("documented as not prevented for private-use schemes, yet: %d %v", st, out)
	}
	stolen := out["session_token"].(string)
	// What the victim has: the login event, and the device in the list,
	// which ends it everywhere.
	deadline := time.Now().Add(5 * time.Second)
	for events.count(ginoauth.EventLogin, "") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	events.mu.Lock()
	kinds := []string{}
	for _, e := range events.ev {
		kinds = append(kinds, e.Kind)
	}
	events.mu.Unlock()
	if !slices.Contains(kinds, "mobile") {
		t.Fatalf("no login event of kind mobile: %v", kinds)
	}
	var ref string
	for _, s := range listSessions(t, victim) {
		if s["kind"] == "mobile" {
			ref = s["ref"].(string)
		}
	}
	if ref == "" {
		t.Fatal("the native device is not in the victim's device list")
	}
	body, _ := json.Marshal(map[string]string{"ref": ref})
	r := victim.Do(http.MethodPost, "/api/sessions/end", bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	if r.Status != http.StatusOK {
		t.Fatalf("ending the device: %d %s", r.Status, r.Body)
	}
	if st := bearerStatus(t, m, "/api/whoami", stolen); st != http.StatusUnauthorized {
		t.Fatalf("the attacker's token after the victim ended the device: %d", st)
	}
}
