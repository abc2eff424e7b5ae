package interop_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// A native app's login against the reference PDS: mobile-start, sign-in and
// consent in the "system browser", the one-time code at the app's redirect
// URI, the code exchange with the app's PKCE verifier, a PDS call with the
// bearer token, a rotation, and logout, after which the reference server
// refuses the tokens.
func TestInteropMobileLogin(t *testing.T) {
	env := refpds.ForTest(t)
	const redirect = "com.example.app:/oauth/callback"
	a := newApp(t, env, testdb.All()[1].New(t), func(o *apptest.Options) {
		prev := o.Configure
		o.Configure = func(c *ginoauth.Config) {
			if prev != nil {
				prev(c)
			}
			c.Mobile.RedirectURIs = []string{redirect}
		}
	})
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	verifier := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(verifier))
	post := func(path string, body any, token string) (int, map[string]any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, a.Server.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
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
	st, out := post("/api/auth/mobile-start", map[string]string{"handle": "alice.test", "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]),
		"code_challenge_method": "S256", "redirect_uri": redirect, "state": "app-state"}, "")
	if st != http.StatusOK {
		t.Fatalf("mobile-start: %d %v", st, out)
	}
	browser := a.NewBrowser()
	cb := browser.Get(browser.Consent(out["authUrl"].(string), "alice.test"))
	loc, err := url.Parse(cb.Header.Get("Location"))
	if cb.Status != http.StatusFound || err != nil || loc.Query().Get("state") != "app-state" {
		t.Fatalf("callback: %d %s %s", cb.Status, cb.Header.Get("Location"), cb.Body)
	}
	st, sess := post("/api/auth/mobile-token", map[string]string{"code": loc.Query().Get("code"), "code_verifier": verifier, "redirect_uri": redirect}, "")
	if st != http.StatusOK {
		t.Fatalf("mobile-token: %d %v", st, sess)
	}
	token := sess["session_token"].(string)
	call := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, a.Server.URL+"/api/pds-session", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := call(token); st != http.StatusOK {
		t.Fatalf("PDS call with the bearer token: %d", st)
	}
	st, rot := post("/api/auth/mobile-refresh", nil, token)
	if st != http.StatusOK {
		t.Fatalf("mobile-refresh: %d %v", st, rot)
	}
	fresh := rot["session_token"].(string)
	if st := call(fresh); st != http.StatusOK {
		t.Fatalf("PDS call after the rotation (the OAuth tokens were refreshed at the reference server): %d", st)
	}
	acct, _ := env.Account("alice")
	g := a.Client.LastGrant()
	stored, err := a.Client.Store().GetSession(context.Background(), syntax.DID(acct.DID), g.OAuthSessionID)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := post("/api/logout", nil, fresh); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	if st := call(fresh); st != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", st)
	}
	if p, err := env.ProbeAccessToken(context.Background(), *stored); err != nil || p.Status != http.StatusUnauthorized {
		t.Fatalf("the app's tokens must be revoked at the reference server: %v %v", p, err)
	}
}
