package ginoauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// runWebLogin is the whole story of one user through the prebuilt handlers:
// login, session check, PDS calls through the ready OAuth session, logout,
// and then proof that the old cookie and the tokens are dead.
func runWebLogin(t *testing.T, storage storage.Store) {
	a := newTestApp(t, storage)
	b := a.NewBrowser()

	authURL := b.StartLogin("@Alice.Test", "/dashboard?tab=1")
	if !strings.HasPrefix(authURL, "https://pds.test/oauth/authorize?") {
		t.Fatalf("login should redirect to the authorization server, got %q", authURL)
	}
	if b.Cookie("sid_flow") == nil {
		t.Fatal("login must bind the flow to the browser with a flow cookie")
	}
	if st := a.as.Stats(); st.PARs != 1 {
		t.Fatalf("want one pushed authorization request, got %+v", st)
	}

	cb := b.Get(b.Consent(authURL, "alice.test"))
	if cb.Status != http.StatusFound || cb.Header.Get("Location") != "/dashboard?tab=1" {
		t.Fatalf("callback: want 302 to /dashboard?tab=1, got %d %q: %s", cb.Status, cb.Header.Get("Location"), cb.Body)
	}
	sid := b.Cookie("sid")
	if sid == nil {
		t.Fatal("callback did not set the session cookie")
	}
	for _, raw := range cb.Header.Values("Set-Cookie") {
		if strings.HasPrefix(raw, "sid=") {
			lower := strings.ToLower(raw)
			// A public client's login lasts as long as its grant: two weeks.
			for _, attr := range []string{"httponly", "samesite=lax", "path=/", "max-age=1209600"} {
				if !strings.Contains(lower, attr) {
					t.Errorf("session cookie lacks %s: %s", attr, raw)
				}
			}
			if strings.Contains(lower, "domain=") {
				t.Errorf("session cookie must not set Domain by default: %s", raw)
			}
		}
	}

	s := b.Get("/api/session")
	body := s.JSON(t)
	if s.Status != http.StatusOK || body["valid"] != true || body["did"] != a.alice.DID.String() || body["handle"] != "alice.test" {
		t.Fatalf("/api/session: %d %v", s.Status, body)
	}
	if s.Header.Get("Cache-Control") != "no-store" {
		t.Fatal("authenticated JSON must carry Cache-Control: no-store")
	}
	if r := b.Get("/dashboard"); string(r.Body) != "hello alice.test" {
		t.Fatalf("middleware should put the user in the context: %s", r.Body)
	}

	// An authenticated PDS call through the ready OAuth session (DPoP-bound).
	p := b.Get("/api/pds-session")
	if pb := p.JSON(t); p.Status != http.StatusOK || pb["did"] != a.alice.DID.String() {
		t.Fatalf("PDS call through the OAuth session failed: %d %v", p.Status, pb)
	}
	w := b.PostForm("/api/post", url.Values{"text": {"hello from a test"}})
	if wb := w.JSON(t); w.Status != http.StatusOK || !strings.HasPrefix(wb["uri"].(string), "at://"+a.alice.DID.String()+"/app.bsky.feed.post/") {
		t.Fatalf("createRecord through the OAuth session failed: %d %v", w.Status, wb)
	}

	sessions := a.as.Sessions("alice.test")
	if len(sessions) != 1 || !sessions[0].Active {
		t.Fatalf("want one active OAuth session at the server, got %+v", sessions)
	}
	tokens := sessions[0]

	// Logout: POST only.
	if r := b.Get("/api/logout"); r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET logout must not exist, got %d", r.Status)
	}
	l := b.PostForm("/api/logout", nil)
	if lb := l.JSON(t); l.Status != http.StatusOK || lb["success"] != true {
		t.Fatalf("logout: %d %v", l.Status, lb)
	}
	if sc := strings.Join(l.Header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "sid=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("logout must clear the cookie with Max-Age=0: %v", l.Header.Values("Set-Cookie"))
	}
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized || r.JSON(t)["valid"] != false {
		t.Fatalf("after logout the session must be invalid: %d %s", r.Status, r.Body)
	}
	// Replaying the old cookie does not bring the session back.
	if r := a.WithCookie(http.MethodGet, "/api/session", sid.Value); r.Status != http.StatusUnauthorized {
		t.Fatalf("old cookie accepted after logout: %d %s", r.Status, r.Body)
	}
	if r := a.WithCookie(http.MethodGet, "/api/pds-session", sid.Value); r.Status != http.StatusUnauthorized {
		t.Fatalf("old cookie reached the PDS after logout: %d %s", r.Status, r.Body)
	}
	// The tokens were revoked at the authorization server.
	if a.as.TokenActive(tokens.AccessToken) || a.as.TokenActive(tokens.RefreshToken) {
		t.Fatal("logout must revoke the access and refresh tokens at the authorization server")
	}
	if after := a.as.Sessions("alice.test"); after[0].EndReason != "revoked" {
		t.Fatalf("server-side session should be revoked, got %q", after[0].EndReason)
	}
}

func TestWebLoginEndToEnd(t *testing.T) {
	for _, s := range storages(t) {
		t.Run(s.name, func(t *testing.T) { runWebLogin(t, s.open(t)) })
	}
}

// An expired access token is refreshed once and the rotated tokens are
// stored: the next call uses them instead of spending the old refresh token
// again (which the server would punish by killing the session).
func TestExpiredAccessTokenIsRefreshedAndSaved(t *testing.T) {
	for _, s := range storages(t) {
		t.Run(s.name, func(t *testing.T) {
			a := newTestApp(t, s.open(t))
			b := a.NewBrowser()
			b.Login("alice.test", "")
			a.as.ExpireAccessTokens()
			for i := 0; i < 3; i++ {
				if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
					t.Fatalf("call %d after expiry: %d %s", i, r.Status, r.Body)
				}
			}
			st := a.as.Stats()
			if st.RefreshGrants != 1 || st.ReplaysDetected != 0 {
				t.Fatalf("want exactly one refresh and no replay, got %+v", st)
			}
			if sess := a.as.Sessions("alice.test"); len(sess) != 1 || !sess[0].Active || sess[0].Refreshes != 1 {
				t.Fatalf("server session should be alive after one refresh: %+v", sess)
			}
		})
	}
}

func TestClientMetadataDocument(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	r := b.Get("/oauth-client-metadata.json")
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("metadata: want 200 application/json, got %d %q", r.Status, r.Header.Get("Content-Type"))
	}
	m := r.JSON(t)
	if m["client_id"] != a.OAuthConfig.ClientID || m["dpop_bound_access_tokens"] != true {
		t.Fatalf("unexpected metadata: %v", m)
	}
	j := b.Get("/oauth/jwks.json")
	if j.Status != http.StatusOK || strings.Contains(string(j.Body), `"d"`) {
		t.Fatalf("JWKS must be served without private members: %d %s", j.Status, j.Body)
	}
}
