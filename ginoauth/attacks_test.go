package ginoauth_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

// attack is one case of the attacker's list that SECURITY.md publishes:
// TestSecurityDocMatchesAttacks keeps the two the same, so the document
// cannot claim a defence no test checks.
type attack struct {
	id, what string
	run      func(t *testing.T, a *testApp)
}

var attacks = []attack{
	{"forced-login-post", "a page on another site auto-posts the login form with the attacker's handle", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		for _, h := range []http.Header{{"Origin": {"https://evil.example"}}, {"Sec-Fetch-Site": {"cross-site"}}, {"Sec-Fetch-Site": {"same-site"}}} {
			h.Set("Content-Type", "application/x-www-form-urlencoded")
			r := b.Do(http.MethodPost, "/login", strings.NewReader("handle=bob.test"), h)
			wantCode(t, r, http.StatusForbidden, ginoauth.CodeCrossSite)
		}
		if st := a.as.Stats(); st.PARs != 0 || b.Cookie("sid_flow") != nil {
			t.Fatalf("a refused login must not reach the server or set a flow cookie: %+v", st)
		}
	}},
	{"forced-login-link", "a link on another site opens /login?handle=<attacker>: the user must confirm", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		r := b.Do(http.MethodGet, "/login?handle=bob.test&redirect=/x", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Accept": {"text/html"}})
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Another site sent you here") || !strings.Contains(string(r.Body), "bob.test") {
			t.Fatalf("want a confirmation page, got %d %s", r.Status, r.Body)
		}
		if st := a.as.Stats(); st.PARs != 0 {
			t.Fatal("the cross-site link must not start a login by itself")
		}
		// Confirming is a same-origin form post, which goes ahead.
		r = b.Do(http.MethodPost, "/login", strings.NewReader("handle=bob.test&redirect=%2Fx"), http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {a.Server.URL}, "Sec-Fetch-Site": {"same-origin"}})
		if r.Status != http.StatusFound {
			t.Fatalf("the confirmed login: %d %s", r.Status, r.Body)
		}
	}},
	{"logout-csrf", "a page on another site posts to the logout route", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		b.Login("alice.test", "")
		r := b.Do(http.MethodPost, "/api/logout", nil, http.Header{"Origin": {"https://evil.example"}})
		wantCode(t, r, http.StatusForbidden, ginoauth.CodeCrossSite)
		if r := b.Get("/api/session"); r.Status != http.StatusOK {
			t.Fatal("the refused logout must leave the user logged in")
		}
	}},
	{"app-route-csrf", "a page on another site posts to an app route behind RequireSameOrigin", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		b.Login("alice.test", "")
		wantCode(t, b.Do(http.MethodPost, "/app/act", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden, ginoauth.CodeCrossSite)
		wantCode(t, b.Do(http.MethodDelete, "/app/act", nil, http.Header{"Origin": {"https://evil.example"}}), http.StatusForbidden, ginoauth.CodeCrossSite)
		if r := b.Do(http.MethodPost, "/app/act", nil, http.Header{"Origin": {a.Server.URL}, "Sec-Fetch-Site": {"same-origin"}}); r.Status != http.StatusOK {
			t.Fatalf("a same-origin post: %d", r.Status)
		}
		if r := b.Do(http.MethodPost, "/app/act", nil, http.Header{"Origin": {"https://www.app.example"}}); r.Status != http.StatusOK {
			t.Fatalf("an allowed origin: %d", r.Status)
		}
		if r := b.Do(http.MethodGet, "/app/act", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}); r.Status != http.StatusOK {
			t.Fatalf("a cross-site GET is not state changing: %d", r.Status)
		}
	}},
	{"wrong-method", "a mounted route called with another method answers 405 JSON with Allow", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		for path, allow := range map[string]string{"/api/logout": "POST", "/login": "GET, POST", "/oauth/callback": "GET", "/api/session": "GET"} {
			r := b.Do(http.MethodPut, path, nil, nil)
			if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != allow || r.JSON(t)["code"] != "method_not_allowed" {
				t.Errorf("PUT %s: %d Allow %q %s", path, r.Status, r.Header.Get("Allow"), r.Body)
			}
		}
		if r := b.Get("/api/logout"); r.Status != http.StatusMethodNotAllowed {
			t.Errorf("GET logout: %d", r.Status)
		}
	}},
	{"return-path", "hostile return paths fall back to /, legitimate ones with encoded queries survive the login", func(t *testing.T, a *testApp) {
		for raw, want := range map[string]string{
			"/search?q=%2F%2Fx": "/search?q=%2F%2Fx", "/%252F%252Fevil.example": "/", "/.//evil.example": "/",
			"/a/../..//evil.example": "/", "/%E2%80%8B/evil.example": "/", "/\u00a0/evil": "/", "//evil.example": "/", "/\\evil.example": "/",
		} {
			b := a.NewBrowser()
			if r := b.Login("alice.test", raw); r.Header.Get("Location") != want {
				t.Errorf("return path %q: went to %q, want %q", raw, r.Header.Get("Location"), want)
			}
		}
	}},
	{"cookie-tossing", "a sibling subdomain plants a second session cookie of the same name", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		b.Login("alice.test", "")
		real := b.Cookie("sid").Value
		for _, order := range [][]string{{"garbage", real}, {real, "garbage"}} {
			r := a.NewBrowser().Do(http.MethodGet, "/api/session", nil, http.Header{"Cookie": {"sid=" + order[0] + "; sid=" + order[1]}})
			if r.Status != http.StatusOK || len(r.Header.Values("Set-Cookie")) != 0 {
				t.Fatalf("with a tossed cookie: %d %v; want the real one used and nothing cleared", r.Status, r.Header.Values("Set-Cookie"))
			}
		}
	}},
	{"cookie-clearing-cache", "a response that clears a cookie is never cached", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		b.Login("alice.test", "")
		r := b.PostForm("/api/logout", nil)
		if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), " "), "Max-Age=0") || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("logout: %v %q", r.Header.Values("Set-Cookie"), r.Header.Get("Cache-Control"))
		}
		r = a.NewBrowser().Do(http.MethodGet, "/dashboard", nil, http.Header{"Cookie": {"sid=tampered"}})
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("clearing a bad cookie: Cache-Control %q", r.Header.Get("Cache-Control"))
		}
	}},
	{"flow-binding-lifetime", "a new /login does not keep an old flow binding alive forever", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		b.StartLogin("alice.test", "")
		old := b.Cookie("sid_flow")                      // still valid for a few more minutes
		a.Clock.Advance(10*time.Minute - 30*time.Second) // FlowTTL defaults to 10 minutes
		authURL := b.StartLogin("alice.test", "")        // must bind to a new value
		stale := a.NewBrowser()
		stale.SetCookie(old)
		wantCode(t, stale.Get(stale.Consent(authURL, "alice.test")), http.StatusBadRequest, ginoauth.CodeBrowserMismatch)
	}},
	{"leaked-callback", "someone who got hold of the callback URL presents it first", func(t *testing.T, a *testApp) {
		victim := a.NewBrowser()
		callback := victim.Consent(victim.StartLogin("alice.test", "/home"), "alice.test")
		attacker := a.NewBrowser()
		wantCode(t, attacker.Get(callback), http.StatusBadRequest, ginoauth.CodeBrowserMismatch)
		if r := victim.Get(callback); r.Status != http.StatusFound || r.Header.Get("Location") != "/home" {
			t.Fatalf("the real browser's login must still complete: %d %s", r.Status, r.Body)
		}
	}},
	{"callback-replay", "the callback URL is presented twice", func(t *testing.T, a *testApp) {
		b := a.NewBrowser()
		authURL := b.StartLogin("alice.test", "")
		flow := b.Cookie("sid_flow")
		callback := b.Consent(authURL, "alice.test")
		b.Get(callback)
		again := a.NewBrowser()
		again.SetCookie(flow)
		wantCode(t, again.Get(callback), http.StatusBadRequest, ginoauth.CodeUnknownState)
	}},
	{"login-flood", "one address floods the login start naming someone else's handle, and the callback", loginFloodAttack},
	{"concurrent-rotation", "fifty rotations of one native app token at once on three instances, and again when the save fails", attackConcurrentRotation},
	{"origin-browser-headers", "pages of allowed, sibling and hostile origins post with the headers today's browsers send, directly and behind a proxy that rewrites Host", attackOriginHeaders},
	{"post-query-parameters", "a form POST carries its parameters in the query string instead of the body", attackPostQuery},
	{"duplicate-json-keys", "a native app's JSON body names a key twice, or twice in different case", attackDuplicateKeys},
	{"cors-simple-request", "a page sends mobile-start or mobile-token as a CORS-simple request (text/plain, a form, no Content-Type)", attackSimpleRequest},
	{"code-reuse", "a native app's one-time code is redeemed again after a successful exchange", attackCodeReuse},
	{"two-authorization-headers", "a request carries two Authorization headers", attackTwoAuthorizations},
	{"private-server-names", "a server= login names a host that is not public: .internal, .local, .lan, a single label, an IP address", attackPrivateServers},
	{"reserved-name-handles", "a login names a handle or did:web under a reserved or private suffix (.local, .onion, handle.invalid, ...)", attackReservedHandles},
	{"auth-only-token-writes", "an authentication-only login, while every write of an OAuth session fails", attackAuthOnlyStorage},
	{"narrowed-scopes", "a refresh narrows the granted scopes; a route behind RequireAuth alone asks User.Allows", attackNarrowedScopes},
	{"cookie-domain-tossing", "with CookieDomain set, a sibling host sets a valid session cookie of its own beside the user's", attackCookieDomainTossing},
	{"planted-flow-cookie", "a sibling host plants the attacker's login binding so that the victim completes the attacker's login", attackPlantedFlowCookie},
	{"logout-cache-delay", "a logout on one instance while another has the session cached", attackLogoutCacheDelay},
	{"attacker-started-native-flow", "an attacker starts a native login and its code lands in the attacker's app, which claimed the private-use scheme", attackAttackerStartedNativeFlow},
	{"account-switch-csrf", "a page on another site posts to the account switch, the sign-out of one account, or the add-account login", attackAccountSwitchCSRF},
	{"planted-account", "an attacker's account is planted in the browser's account list while the user adds another account at the authorization server", attackPlantedAccount},
	{"foreign-account-entry", "the account list of a session cookie names another browser's session of another account", attackForeignAccountEntry},
	{"account-list-shape", "a session cookie names more accounts than the limit, one session twice, or a malformed entry", attackAccountCookieShape},
	{"moved-account-tokens", "a logged-in account moves to a PDS another authorization server protects", attackMovedAccountTokens},
}

func wantCode[C ~string](t *testing.T, r ginoauthtest.Response, status int, code C) {
	t.Helper()
	if r.Status != status || !strings.Contains(string(r.Body), `"`+string(code)+`"`) {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
	}
}

func TestAttacks(t *testing.T) {
	for _, at := range attacks {
		t.Run(at.id, func(t *testing.T) {
			a := newTestApp(t, nil, func(c *ginoauth.Config) { c.AllowedOrigins = []string{"https://www.app.example"} })
			at.run(t, appWithActRoute(t, a))
		})
	}
}

// appWithActRoute adds /app/act, behind RequireSameOrigin, to a new
// instance sharing a's server.
func appWithActRoute(t *testing.T, a *testApp) *testApp {
	return startApp(t, a.as, func(o *apptest.Options) {
		o.Configure = func(c *ginoauth.Config) { c.AllowedOrigins = []string{"https://www.app.example"} }
		o.Routes = func(r *gin.Engine, m *ginoauth.Manager) {
			act := r.Group("/app", ginoauth.RequireSameOrigin(m))
			h := func(c *gin.Context) { c.String(http.StatusOK, "done") }
			act.GET("/act", h)
			act.POST("/act", h)
			act.DELETE("/act", h)
		}
	})
}

// SECURITY.md's table of attack cases and this file's list are the same.
func TestSecurityDocMatchesAttacks(t *testing.T) {
	doc, err := os.ReadFile("../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| ([^|]+) \\|").FindAllStringSubmatch(string(doc), -1)
	inDoc := map[string]string{}
	for _, r := range rows {
		inDoc[r[1]] = strings.TrimSpace(r[2])
	}
	for _, at := range attacks {
		if got, ok := inDoc[at.id]; !ok || got != at.what {
			t.Errorf("SECURITY.md must list | `%s` | %s |, has %q", at.id, at.what, got)
		}
		delete(inDoc, at.id)
	}
	for id := range inDoc {
		t.Errorf("SECURITY.md lists %q, which no test checks", id)
	}
}
