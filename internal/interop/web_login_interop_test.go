package interop_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
)

// TestInteropWebLogin drives the library exactly as a user's app would,
// against the reference PDS: the prebuilt handlers, a cookie jar, /login,
// sign-in and consent at the PDS, the callback, /api/session, a record
// created and read back through the ready OAuth session, a forced token
// refresh (after which the old access token is dead at the reference server,
// so the next call only works if the rotated tokens were saved), logout, and
// then proof from the server side that the tokens were revoked.
func TestInteropWebLogin(t *testing.T) {
	env := refpds.ForTest(t)
	for _, s := range storages() {
		t.Run(s.Name, func(t *testing.T) { runWebLogin(t, env, s.New(t)) })
	}
}

func runWebLogin(t *testing.T, env *refpds.Env, storage storage.Store) {
	ctx := context.Background()
	acct, err := env.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(t, env, storage)
	b := a.NewBrowser()

	authURL := b.StartLogin(acct.Handle.String(), "/after-login")
	if !strings.HasPrefix(authURL, env.Issuer+"/oauth/authorize?") {
		t.Fatalf("login should redirect to the reference authorization server, got %q", authURL)
	}
	cb := b.Get(b.Consent(authURL, acct.Handle.String()))
	if cb.Status != http.StatusFound || cb.Header.Get("Location") != "/after-login" {
		t.Fatalf("callback: %d %q %s", cb.Status, cb.Header.Get("Location"), cb.Body)
	}
	s := b.Get("/api/session").JSON(t)
	if s["valid"] != true || s["did"] != acct.DID.String() || s["handle"] != acct.Handle.String() {
		t.Fatalf("/api/session: %v", s)
	}

	text := "interop " + t.Name()
	created := b.PostForm("/api/post", url.Values{"text": {text}})
	uri, _ := created.JSON(t)["uri"].(string)
	if created.Status != http.StatusOK || !strings.HasPrefix(uri, "at://"+acct.DID.String()+"/app.bsky.feed.post/") {
		t.Fatalf("createRecord at the reference PDS: %d %s", created.Status, created.Body)
	}
	read := b.Get("/api/record?uri=" + url.QueryEscape(uri))
	if v, _ := read.JSON(t)["value"].(map[string]any); read.Status != http.StatusOK || v["text"] != text {
		t.Fatalf("getRecord did not return what was written: %d %s", read.Status, read.Body)
	}

	if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
		t.Fatalf("forced refresh: %d %s", r.Status, r.Body)
	}
	// The reference server kills the previous access token at refresh: this
	// call succeeds only with the rotated tokens read back from storage.
	if r := b.PostForm("/api/post", url.Values{"text": {text + " after refresh"}}); r.Status != http.StatusOK {
		t.Fatalf("call after refresh (rotated tokens not saved?): %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK || r.JSON(t)["did"] != acct.DID.String() {
		t.Fatalf("getSession after refresh: %d %s", r.Status, r.Body)
	}

	snapshot := currentTokens(t, a, b)
	if p, err := env.ProbeAccessToken(ctx, snapshot); err != nil || !p.OK() {
		t.Fatalf("the stored access token should be live before logout: %v %v", p, err)
	}
	sid := b.Cookie("sid").Value
	if r := b.PostForm("/api/logout", nil); r.Status != http.StatusOK || r.JSON(t)["success"] != true {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("session after logout: %d", r.Status)
	}
	if r := a.WithCookie(http.MethodGet, "/api/session", sid); r.Status != http.StatusUnauthorized {
		t.Fatalf("old cookie replayed after logout: %d %s", r.Status, r.Body)
	}

	// Server side: both tokens are dead.
	p, err := env.ProbeAccessToken(ctx, snapshot)
	if err != nil || p.Status != http.StatusUnauthorized || p.Error != "invalid_token" {
		t.Fatalf("access token after logout: want 401 invalid_token, got %v %v", p, err)
	}
	p, err = env.ProbeRefreshToken(ctx, a.OAuthConfig, snapshot)
	if err != nil || p.Status != http.StatusBadRequest || p.Error != "invalid_grant" {
		t.Fatalf("refresh token after logout: want 400 invalid_grant, got %v %v", p, err)
	}
}

// currentTokens reads the user's OAuth session (tokens, DPoP key) as stored
// by the library right now.
func currentTokens(t *testing.T, a *apptest.App, b *ginoauthtest.Browser) oauth.ClientSessionData {
	t.Helper()
	who := b.Get("/api/whoami").JSON(t)
	did, _ := who["did"].(string)
	id, _ := who["oauthSessionID"].(string)
	data, err := a.Client.Store().GetSession(context.Background(), syntax.DID(did), id)
	if err != nil {
		t.Fatalf("reading the stored OAuth session: %v", err)
	}
	return *data
}
