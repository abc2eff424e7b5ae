package ginoauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// runWebLogin is the whole story of one user through the prebuilt handlers:
// login, session check, PDS calls through the ready OAuth session, logout,
// and then proof that the old cookie and the tokens are dead.
func runWebLogin(t *testing.T, storage ginoauth.Storage) {
	a := newTestApp(t, storage)
	b := a.newBrowser()

	authURL := b.startLogin("@Alice.Test", "/dashboard?tab=1")
	if !strings.HasPrefix(authURL, "https://pds.test/oauth/authorize?") {
		t.Fatalf("login should redirect to the authorization server, got %q", authURL)
	}
	if b.cookie("sid_flow") == nil {
		t.Fatal("login must bind the flow to the browser with a flow cookie")
	}
	if st := a.as.Stats(); st.PARs != 1 {
		t.Fatalf("want one pushed authorization request, got %+v", st)
	}

	cb := b.get(b.consent(authURL, "alice.test"))
	if cb.status != http.StatusFound || cb.header.Get("Location") != "/dashboard?tab=1" {
		t.Fatalf("callback: want 302 to /dashboard?tab=1, got %d %q: %s", cb.status, cb.header.Get("Location"), cb.body)
	}
	sid := b.cookie("sid")
	if sid == nil {
		t.Fatal("callback did not set the session cookie")
	}
	for _, raw := range cb.header.Values("Set-Cookie") {
		if strings.HasPrefix(raw, "sid=") {
			lower := strings.ToLower(raw)
			for _, attr := range []string{"httponly", "samesite=lax", "path=/", "max-age=604800"} {
				if !strings.Contains(lower, attr) {
					t.Errorf("session cookie lacks %s: %s", attr, raw)
				}
			}
			if strings.Contains(lower, "domain=") {
				t.Errorf("session cookie must not set Domain by default: %s", raw)
			}
		}
	}

	s := b.get("/api/session")
	body := s.json(t)
	if s.status != http.StatusOK || body["valid"] != true || body["did"] != a.alice.DID.String() || body["handle"] != "alice.test" {
		t.Fatalf("/api/session: %d %v", s.status, body)
	}
	if s.header.Get("Cache-Control") != "no-store" {
		t.Fatal("authenticated JSON must carry Cache-Control: no-store")
	}
	if r := b.get("/dashboard"); string(r.body) != "hello alice.test" {
		t.Fatalf("middleware should put the user in the context: %s", r.body)
	}

	// An authenticated PDS call through the ready OAuth session (DPoP-bound).
	p := b.get("/api/pds-session")
	if pb := p.json(t); p.status != http.StatusOK || pb["did"] != a.alice.DID.String() {
		t.Fatalf("PDS call through the OAuth session failed: %d %v", p.status, pb)
	}
	w := b.postForm("/api/post", url.Values{"text": {"hello from a test"}})
	if wb := w.json(t); w.status != http.StatusOK || !strings.HasPrefix(wb["uri"].(string), "at://"+a.alice.DID.String()+"/app.bsky.feed.post/") {
		t.Fatalf("createRecord through the OAuth session failed: %d %v", w.status, wb)
	}

	sessions := a.as.Sessions("alice.test")
	if len(sessions) != 1 || !sessions[0].Active {
		t.Fatalf("want one active OAuth session at the server, got %+v", sessions)
	}
	tokens := sessions[0]

	// Logout: POST only.
	if r := b.get("/api/logout"); r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET logout must not exist, got %d", r.status)
	}
	l := b.postForm("/api/logout", nil)
	if lb := l.json(t); l.status != http.StatusOK || lb["success"] != true {
		t.Fatalf("logout: %d %v", l.status, lb)
	}
	if sc := strings.Join(l.header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "sid=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("logout must clear the cookie with Max-Age=0: %v", l.header.Values("Set-Cookie"))
	}
	if r := b.get("/api/session"); r.status != http.StatusUnauthorized || r.json(t)["valid"] != false {
		t.Fatalf("after logout the session must be invalid: %d %s", r.status, r.body)
	}
	// Replaying the old cookie does not bring the session back.
	if r := a.withCookie(http.MethodGet, "/api/session", sid.Value); r.status != http.StatusUnauthorized {
		t.Fatalf("old cookie accepted after logout: %d %s", r.status, r.body)
	}
	if r := a.withCookie(http.MethodGet, "/api/pds-session", sid.Value); r.status != http.StatusUnauthorized {
		t.Fatalf("old cookie reached the PDS after logout: %d %s", r.status, r.body)
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
			b := a.newBrowser()
			b.login("alice.test", "")
			a.as.ExpireAccessTokens()
			for i := 0; i < 3; i++ {
				if r := b.get("/api/pds-session"); r.status != http.StatusOK {
					t.Fatalf("call %d after expiry: %d %s", i, r.status, r.body)
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
	b := a.newBrowser()
	r := b.get("/oauth-client-metadata.json")
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("metadata: want 200 application/json, got %d %q", r.status, r.header.Get("Content-Type"))
	}
	m := r.json(t)
	if m["client_id"] != a.client.App().Config.ClientID || m["dpop_bound_access_tokens"] != true {
		t.Fatalf("unexpected metadata: %v", m)
	}
	j := b.get("/oauth/jwks.json")
	if j.status != http.StatusOK || strings.Contains(string(j.body), `"d"`) {
		t.Fatalf("JWKS must be served without private members: %d %s", j.status, j.body)
	}
}
