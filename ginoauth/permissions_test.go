package ginoauth_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

// The scopes the permission tests' client declares.
var (
	noteCreate = "repo:com.example.note?action=create"
	photoWrite = "repo:com.example.photo"
	notesSet   = "include:com.example.authNotes"
	declared   = []string{"atproto", noteCreate, photoWrite, notesSet}
)

// permApp is the test app with a client declaring declared, and routes
// guarded by RequireScopes.
func permApp(t *testing.T, configure ...func(*ginoauth.Config)) *testApp {
	t.Helper()
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	if err := as.PublishPermissionSet("com.example.authNotes", "repo:com.example.note", photoWrite); err != nil {
		t.Fatal(err)
	}
	return startApp(t, as, func(o *apptest.Options) {
		o.Scopes = declared
		o.Configure = func(c *ginoauth.Config) {
			for _, f := range configure {
				f(c)
			}
		}
		o.Routes = func(r *gin.Engine, m *ginoauth.Manager) {
			ok := func(c *gin.Context) { c.String(http.StatusOK, "ok") }
			r.GET("/notes", ginoauth.RequireScopes(m, noteCreate), ok)
			r.GET("/photos", ginoauth.RequireScopes(m, photoWrite), ok)
			r.GET("/set", ginoauth.RequireScopes(m, notesSet), ok)
		}
	})
}

// start begins a login through the test app's /start route and returns the
// authorization URL.
func start(t *testing.T, b *ginoauthtest.Browser, q url.Values) string {
	t.Helper()
	r := b.Get("/start?" + q.Encode())
	if r.Status != http.StatusFound {
		t.Fatalf("/start?%s: %d %s", q.Encode(), r.Status, r.Body)
	}
	return r.Header.Get("Location")
}

func lastRequest(t *testing.T, as *ginoauthtest.Server) ginoauthtest.AuthorizationRequestInfo {
	t.Helper()
	reqs := as.AuthorizationRequests()
	if len(reqs) == 0 {
		t.Fatal("no authorization request reached the server")
	}
	return reqs[len(reqs)-1]
}

func sessionScopes(t *testing.T, b *ginoauthtest.Browser) []string {
	t.Helper()
	r := b.Get("/api/session")
	if r.Status != http.StatusOK {
		t.Fatalf("/api/session: %d %s", r.Status, r.Body)
	}
	var out []string
	for _, s := range r.JSON(t)["scopes"].([]any) {
		out = append(out, s.(string))
	}
	return out
}

// A login's own scopes, prompt and hint (as typed) reach the authorization
// server; the prebuilt /login passes server and prompt, never scopes.
func TestPerLoginOptionsReachTheServer(t *testing.T) {
	a := permApp(t)
	b := a.NewBrowser()
	authURL := start(t, b, url.Values{"handle": {" @Alice.Test "}, "scope": {noteCreate}, "prompt": {"login"}})
	got := lastRequest(t, a.as)
	if got.Scope != "atproto "+noteCreate || got.Prompt != "login" || got.LoginHint != "@Alice.Test" {
		t.Fatalf("the server saw %+v", got)
	}
	b.Get(b.Consent(authURL, "alice.test"))
	if s := sessionScopes(t, b); !slices.Equal(s, []string{"atproto", noteCreate}) {
		t.Fatalf("granted: %v", s)
	}

	r := b.PostForm("/login", url.Values{"handle": {"alice.test"}, "prompt": {"select_account"}, "scope": {photoWrite}})
	if r.Status != http.StatusFound {
		t.Fatalf("/login: %d %s", r.Status, r.Body)
	}
	if got := lastRequest(t, a.as); got.Prompt != "select_account" || got.Scope != strings.Join(declared, " ") {
		t.Fatalf("the prebuilt /login must pass prompt and never take scopes from the form: %+v", got)
	}
	for _, bad := range []url.Values{{"handle": {"alice.test"}, "prompt": {"none"}}, {"server": {"http://pds.test"}}, {"server": {"https://127.0.0.1"}}, {"server": {"pds.test/path"}}} {
		if r := b.PostForm("/login", bad); r.Status != http.StatusBadRequest {
			t.Errorf("%v: want 400, got %d %s", bad, r.Status, r.Body)
		}
	}
	if r := b.Get("/start?" + url.Values{"handle": {"alice.test"}, "scope": {"repo:com.example.undeclared"}}.Encode()); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), string(ginoauth.CodeInvalidScope)) {
		t.Fatalf("an undeclared scope: %d %s", r.Status, r.Body)
	}
}

// A user without a handle starts at a server; the account comes from the
// token, and prompt=create signs up a new account at the test server.
func TestStartFromAServerAndSignUp(t *testing.T) {
	a := permApp(t)
	b := a.NewBrowser()
	r := b.PostForm("/login", url.Values{"server": {"pds.test"}})
	if r.Status != http.StatusFound {
		t.Fatalf("/login with a server: %d %s", r.Status, r.Body)
	}
	if got := lastRequest(t, a.as); got.LoginHint != "" {
		t.Fatalf("no hint without a handle: %+v", got)
	}
	b.Get(b.Consent(r.Header.Get("Location"), "bob.test"))
	if who := b.Get("/api/whoami").JSON(t); who["did"] != a.bob.DID.String() {
		t.Fatalf("logged in as %v, want bob", who)
	}

	c := a.NewBrowser()
	r = c.PostForm("/login", url.Values{"server": {"https://pds.test"}, "prompt": {"create"}})
	if got := lastRequest(t, a.as); got.Prompt != "create" || r.Status != http.StatusFound {
		t.Fatalf("sign-up: %d %+v", r.Status, got)
	}
	c.Get(c.Consent(r.Header.Get("Location"), "newcomer.test"))
	acct, ok := a.as.Account("newcomer.test")
	if !ok {
		t.Fatal("prompt=create did not create the account")
	}
	if who := c.Get("/api/whoami").JSON(t); who["did"] != acct.DID.String() || who["handle"] != "newcomer.test" {
		t.Fatalf("logged in as %v, want the new account", who)
	}
}

// A route that needs a permission the session lacks answers 403 with the
// missing permission and the step-up URL; following it asks for more,
// replaces the session on this device and returns to the route.
func TestRequireScopesAndStepUp(t *testing.T) {
	a := permApp(t)
	b := a.NewBrowser()
	b.Get(b.Consent(start(t, b, url.Values{"handle": {"alice.test"}, "scope": {noteCreate}}), "alice.test"))
	if r := b.Get("/notes"); r.Status != http.StatusOK {
		t.Fatalf("/notes with its permission: %d %s", r.Status, r.Body)
	}
	r := b.Get("/photos?album=1")
	body := r.JSON(t)
	if r.Status != http.StatusForbidden || body["code"] != string(ginoauth.CodeInsufficientScope) || body["missing"].([]any)[0] != photoWrite {
		t.Fatalf("/photos without its permission: %d %s", r.Status, r.Body)
	}
	oldSid := b.Cookie("sid").Value
	oldTokens := a.as.Sessions("alice.test")[0]

	up := b.Get(body["upgrade"].(string))
	if up.Status != http.StatusFound {
		t.Fatalf("upgrade: %d %s", up.Status, up.Body)
	}
	got := lastRequest(t, a.as)
	if got.Prompt != "consent" || !strings.Contains(got.Scope, photoWrite) || !strings.Contains(got.Scope, noteCreate) || got.LoginHint != a.alice.DID.String() {
		t.Fatalf("the step-up asked for %+v", got)
	}
	cb := b.Get(b.Consent(up.Header.Get("Location"), "alice.test"))
	if cb.Header.Get("Location") != "/photos?album=1" {
		t.Fatalf("step-up callback: %d %s %s", cb.Status, cb.Header.Get("Location"), cb.Body)
	}
	if b.Cookie("sid").Value == oldSid {
		t.Fatal("the session id must change at a step-up")
	}
	if a.as.TokenActive(oldTokens.RefreshToken) {
		t.Fatal("the old session's tokens must be revoked at a step-up")
	}
	if r := b.Get("/photos"); r.Status != http.StatusOK {
		t.Fatalf("/photos after the step-up: %d %s", r.Status, r.Body)
	}
	if r := a.WithCookie(http.MethodGet, "/api/session", oldSid); r.Status != http.StatusUnauthorized {
		t.Fatalf("the replaced session must be gone: %d", r.Status)
	}

	// A step-up approved with another account is refused.
	up = b.Get(body["upgrade"].(string))
	if r := b.Get(b.Consent(up.Header.Get("Location"), "bob.test")); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), string(ginoauth.CodeAccountMismatch)) {
		t.Fatalf("a step-up approved by bob: %d %s", r.Status, r.Body)
	}
	for _, s := range a.as.Sessions("bob.test") {
		if s.Active {
			t.Fatal("the tokens issued for the wrong account must be revoked at once")
		}
	}
	if r := a.NewBrowser().Get("/photos"); r.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", r.Status)
	}
}

// The server may grant less than asked (the user unticked a permission),
// and a permission set re-resolved at refresh may grant less later: the
// recorded scopes follow, and the checks with them.
func TestGrantedScopesStayTrue(t *testing.T) {
	a := permApp(t)
	b := a.NewBrowser()
	b.Get(b.Consent(start(t, b, url.Values{"handle": {"alice.test"}, "scope": {notesSet}}), "alice.test"))
	if s := sessionScopes(t, b); !slices.Contains(s, photoWrite) || !slices.Contains(s, "repo:com.example.note") {
		t.Fatalf("the set's permissions must be granted: %v", s)
	}
	for _, p := range []string{"/notes", "/photos", "/set"} {
		if r := b.Get(p); r.Status != http.StatusOK {
			t.Fatalf("%s with the whole set granted: %d %s", p, r.Status, r.Body)
		}
	}

	if err := a.as.PublishPermissionSet("com.example.authNotes", "repo:com.example.note"); err != nil {
		t.Fatal(err)
	}
	a.as.ExpireAccessTokens()
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK { // refreshes
		t.Fatalf("PDS call: %d %s", r.Status, r.Body)
	}
	if s := sessionScopes(t, b); slices.Contains(s, photoWrite) {
		t.Fatalf("a refresh that grants less must update the recorded scopes: %v", s)
	}
	if r := b.Get("/photos"); r.Status != http.StatusForbidden {
		t.Fatalf("/photos after the set lost it: %d", r.Status)
	}
	if r := b.Get("/notes"); r.Status != http.StatusOK {
		t.Fatalf("/notes: %d", r.Status)
	}

	a.as.DenyScopes(photoWrite)
	c := a.NewBrowser()
	c.Get(c.Consent(start(t, c, url.Values{"handle": {"bob.test"}, "scope": {noteCreate, photoWrite}}), "bob.test"))
	if s := sessionScopes(t, c); slices.Contains(s, photoWrite) || !slices.Contains(s, noteCreate) {
		t.Fatalf("granted less than asked: %v", s)
	}
	if r := c.Get("/photos"); r.Status != http.StatusForbidden {
		t.Fatalf("/photos without the grant: %d", r.Status)
	}
}

// Authentication only: atproto alone is requested, the tokens are revoked
// at the callback and none is stored; the local session works.
func TestAuthenticationOnly(t *testing.T) {
	a := permApp(t, func(c *ginoauth.Config) { c.AuthenticationOnly = true })
	b := a.NewBrowser()
	if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	if got := lastRequest(t, a.as); got.Scope != "atproto" {
		t.Fatalf("requested %q, want atproto alone", got.Scope)
	}
	if st := a.as.Stats(); st.ActiveSessions != 0 || st.SessionsRevoked != 1 {
		t.Fatalf("the tokens must be revoked at once: %+v", st)
	}
	who := b.Get("/api/whoami").JSON(t)
	if who["did"] != a.alice.DID.String() || who["oauthSessionID"] != "" {
		t.Fatalf("whoami: %v", who)
	}
	if _, err := a.Client.Store().GetSession(context.Background(), a.alice.DID, a.Client.LastGrant().OAuthSessionID); err == nil {
		t.Fatal("no OAuth session may be stored")
	}
	if r := b.Get("/api/pds-session"); r.Status == http.StatusOK {
		t.Fatal("there is no OAuth session to call the PDS with")
	}
	if r := b.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatalf("the local session must work: %d", r.Status)
	}
	if r := b.PostForm("/api/logout", nil); r.Status != http.StatusOK {
		t.Fatalf("logout: %d", r.Status)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", r.Status)
	}
}
