package ginoauth_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

const appRedirect = "com.example.app:/oauth/callback"

// nativeApp is a phone app: its own HTTP client (its own cookie jar, none),
// its PKCE pair and state, talking JSON to the backend. The system browser
// is a separate ginoauthtest.Browser.
type nativeApp struct {
	t        testing.TB
	backend  *testApp
	verifier string
	state    string
	token    string
}

func newNativeApp(t testing.TB, a *testApp) *nativeApp {
	return &nativeApp{t: t, backend: a, verifier: randomURLString(48), state: randomURLString(16)}
}

func randomURLString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// call sends JSON (or nothing) with the app's bearer token, if any.
func (n *nativeApp) call(method, path string, body any, token string) (int, map[string]any, http.Header) {
	n.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, n.backend.Server.URL+path, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func (n *nativeApp) start(handle string) string {
	n.t.Helper()
	st, out, _ := n.call(http.MethodPost, "/api/auth/mobile-start", map[string]string{
		"handle": handle, "code_challenge": s256(n.verifier), "code_challenge_method": "S256",
		"redirect_uri": appRedirect, "state": n.state,
	}, "")
	if st != http.StatusOK || out["authUrl"] == nil {
		n.t.Fatalf("mobile-start: %d %v", st, out)
	}
	return out["authUrl"].(string)
}

// browserLogin runs the system browser: consent, the backend's callback,
// and returns the code the backend redirects the app to.
func (n *nativeApp) browserLogin(authURL, handle string) string {
	n.t.Helper()
	browser := n.backend.NewBrowser()
	r := browser.Get(browser.Consent(authURL, handle))
	loc, err := url.Parse(r.Header.Get("Location"))
	if r.Status != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), appRedirect+"?") {
		n.t.Fatalf("callback should redirect to the app: %d %s %s", r.Status, r.Header.Get("Location"), r.Body)
	}
	q := loc.Query()
	if q.Get("state") != n.state || len(q.Get("code")) < 22 || len(q) != 2 {
		n.t.Fatalf("the app redirect must carry only code and the app's state: %v", q)
	}
	return q.Get("code")
}

func (n *nativeApp) redeem(code, verifier string) (int, map[string]any, http.Header) {
	return n.call(http.MethodPost, "/api/auth/mobile-token", map[string]string{"code": code, "code_verifier": verifier, "redirect_uri": appRedirect}, "")
}

// login is the whole flow; it returns the session token.
func (n *nativeApp) login(handle string) string {
	n.t.Helper()
	code := n.browserLogin(n.start(handle), handle)
	st, out, h := n.redeem(code, n.verifier)
	if st != http.StatusOK || out["token_type"] != "Bearer" || h.Get("Cache-Control") != "no-store" {
		n.t.Fatalf("mobile-token: %d %v %v", st, out, h)
	}
	n.token = out["session_token"].(string)
	return n.token
}

func mobileTestApp(t *testing.T) *testApp {
	return newTestApp(t, nil, func(c *ginoauth.Config) {
		c.Mobile.RedirectURIs = []string{appRedirect, "https://app.example/oauth/callback", "http://127.0.0.1/native"}
	})
}

func TestMobileLoginEndToEnd(t *testing.T) {
	a := mobileTestApp(t)
	app := newNativeApp(t, a)
	token := app.login("alice.test")
	if len(token) < 43 {
		t.Fatalf("token of %d characters; want at least 256 bits", len(token))
	}
	if st, who, _ := app.call(http.MethodGet, "/api/whoami", nil, token); st != http.StatusOK || who["did"] != a.alice.DID.String() {
		t.Fatalf("whoami with the bearer token: %d %v", st, who)
	}
	if st, _, _ := app.call(http.MethodGet, "/api/pds-session", nil, token); st != http.StatusOK {
		t.Fatalf("a PDS call for the app: %d", st)
	}
	if st, _, h := app.call(http.MethodGet, "/api/whoami?access_token="+token, nil, ""); st != http.StatusUnauthorized || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("a token in the query string must be ignored: %d", st)
	}

	// Rotation with a grace window.
	st, rot, _ := app.call(http.MethodPost, "/api/auth/mobile-refresh", nil, token)
	if st != http.StatusOK || rot["session_token"] == token {
		t.Fatalf("mobile-refresh: %d %v", st, rot)
	}
	fresh := rot["session_token"].(string)
	if st, again, _ := app.call(http.MethodPost, "/api/auth/mobile-refresh", nil, token); st != http.StatusOK || again["session_token"] != fresh {
		t.Fatalf("a retried rotation within the grace window must answer the same token: %d %v", st, again)
	}
	for _, tok := range []string{token, fresh} {
		if st, _, _ := app.call(http.MethodGet, "/api/pds-session", nil, tok); st != http.StatusOK {
			t.Fatalf("within the grace window both tokens work: %d", st)
		}
	}
	a.Clock.Advance(time.Minute + time.Second)
	if st, _, h := app.call(http.MethodGet, "/api/whoami", nil, token); st != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("the old token after the grace window: %d %v", st, h)
	}
	if st, _, _ := app.call(http.MethodGet, "/api/whoami", nil, fresh); st != http.StatusOK {
		t.Fatalf("the new token: %d", st)
	}

	// The Deno library's route and shape.
	req, _ := http.NewRequest(http.MethodGet, a.Server.URL+"/mobile/refresh-token", nil)
	req.Header.Set("Authorization", "Bearer "+fresh)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var legacy struct {
		Success bool
		Payload struct{ DID, Sid string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&legacy)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !legacy.Success || legacy.Payload.DID != a.alice.DID.String() || len(legacy.Payload.Sid) < 43 {
		t.Fatalf("GET /mobile/refresh-token: %d %+v", resp.StatusCode, legacy)
	}

	// A second rotation within the grace window (with the new token) ends
	// the oldest one: a chain is never longer than two.
	st, rot2, _ := app.call(http.MethodPost, "/api/auth/mobile-refresh", nil, legacy.Payload.Sid)
	if st != http.StatusOK {
		t.Fatalf("second rotation: %d", st)
	}
	if st, _, _ := app.call(http.MethodGet, "/api/whoami", nil, fresh); st != http.StatusUnauthorized {
		t.Fatalf("the token two rotations back must be dead: %d", st)
	}
	legacy.Payload.Sid = rot2["session_token"].(string)

	// Logout ends that device and revokes its tokens.
	if st, out, _ := app.call(http.MethodPost, "/api/logout", nil, legacy.Payload.Sid); st != http.StatusOK || out["success"] != true {
		t.Fatalf("logout with the bearer token: %d %v", st, out)
	}
	for _, tok := range []string{fresh, legacy.Payload.Sid} {
		if st, _, _ := app.call(http.MethodGet, "/api/whoami", nil, tok); st != http.StatusUnauthorized {
			t.Fatalf("after logout: %d", st)
		}
	}
	if st := a.as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("the app's tokens must be revoked at logout: %+v", st)
	}
}

func TestMobileCodeIsSingleUseAndChecked(t *testing.T) {
	a := mobileTestApp(t)
	app := newNativeApp(t, a)

	code := app.browserLogin(app.start("alice.test"), "alice.test")
	if st, _, _ := app.redeem(code, randomURLString(48)); st != http.StatusBadRequest {
		t.Fatalf("a wrong verifier: %d", st)
	}
	if st, out, _ := app.redeem(code, app.verifier); st != http.StatusBadRequest || out["code"] != "invalid_grant" {
		t.Fatalf("a code is burnt by a failed redemption: %d %v", st, out)
	}
	if st := a.as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("the login behind a burnt code must be revoked: %+v", st)
	}

	code = app.browserLogin(app.start("alice.test"), "alice.test")
	if st, _, _ := app.redeem(code, app.verifier); st != http.StatusOK {
		t.Fatalf("redeem: %d", st)
	}
	if st, _, _ := app.redeem(code, app.verifier); st != http.StatusBadRequest {
		t.Fatalf("a code used twice: %d", st)
	}

	code = app.browserLogin(app.start("alice.test"), "alice.test")
	a.Clock.Advance(time.Minute + time.Second)
	if st, _, _ := app.redeem(code, app.verifier); st != http.StatusBadRequest {
		t.Fatalf("an expired code: %d", st)
	}

	// Two redemptions at once: exactly one token.
	code = app.browserLogin(app.start("alice.test"), "alice.test")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, _ := json.Marshal(map[string]string{"code": code, "code_verifier": app.verifier, "redirect_uri": appRedirect})
			resp, err := http.Post(a.Server.URL+"/api/auth/mobile-token", "application/json", bytes.NewReader(raw))
			if err == nil {
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d concurrent redemptions succeeded; want exactly one", ok)
	}
}

func TestMobileStartRefusesBadInputBeforeAnyNetworkCall(t *testing.T) {
	a := mobileTestApp(t)
	app := newNativeApp(t, a)
	good := map[string]string{"handle": "alice.test", "code_challenge": s256(app.verifier), "code_challenge_method": "S256", "redirect_uri": appRedirect, "state": "s"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == "\x00" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		body map[string]string
		code ginoauth.ErrorCode
	}{
		{with("code_challenge_method", "plain"), "invalid_challenge"},
		{with("code_challenge_method", "\x00"), "invalid_challenge"},
		{with("code_challenge", "\x00"), "invalid_challenge"},
		{with("code_challenge", "short"), "invalid_challenge"},
		{with("redirect_uri", "\x00"), "invalid_redirect_uri"},
		{with("redirect_uri", "app://auth-callback"), "invalid_redirect_uri"},
		{with("redirect_uri", "com.example.app:/oauth/callback/evil"), "invalid_redirect_uri"},
		{with("redirect_uri", "com.example.app.evil:/oauth/callback"), "invalid_redirect_uri"},
		{with("redirect_uri", "https://app.example.evil/oauth/callback"), "invalid_redirect_uri"},
		{with("redirect_uri", "https://app.example/oauth/callback?x=1"), "invalid_redirect_uri"},
		{with("redirect_uri", "http://127.0.0.2:8080/native"), "invalid_redirect_uri"},
		{with("state", "\x00"), ginoauth.CodeInvalidRequest},
		{with("handle", "not a handle"), ginoauth.CodeInvalidHandle},
	}
	for _, tc := range cases {
		if st, out, _ := app.call(http.MethodPost, "/api/auth/mobile-start", tc.body, ""); st != http.StatusBadRequest || out["code"] != string(tc.code) {
			t.Errorf("%v: want 400 %s, got %d %v", tc.body, tc.code, st, out)
		}
	}
	if st := a.as.Stats(); st.PARs != 0 {
		t.Fatalf("bad input must be refused before any network call: %+v", st)
	}
	// A loopback redirect URI matches on any port (RFC 8252 section 7.3).
	if st, _, _ := app.call(http.MethodPost, "/api/auth/mobile-start", with("redirect_uri", "http://127.0.0.1:53127/native"), ""); st != http.StatusOK {
		t.Fatalf("loopback redirect on a chosen port: %d", st)
	}
	// The GET variant redirects the system browser at once.
	q := url.Values{}
	for k, v := range good {
		q.Set(k, v)
	}
	if r := a.NewBrowser().Get("/api/auth/mobile-start?" + q.Encode()); r.Status != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "/oauth/authorize") {
		t.Fatalf("GET mobile-start: %d %s", r.Status, r.Body)
	}
}

func TestMobileRefreshFailsClosed(t *testing.T) {
	a := mobileTestApp(t)
	one, two := newNativeApp(t, a), newNativeApp(t, a)
	t1, t2 := one.login("alice.test"), two.login("alice.test")

	// Logout on one device leaves the other logged in.
	if st, _, _ := one.call(http.MethodPost, "/api/logout", nil, t1); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	if st, _, _ := two.call(http.MethodGet, "/api/pds-session", nil, t2); st != http.StatusOK {
		t.Fatalf("the other device: %d", st)
	}

	// Revoked at the server: the rotation answers 401, never a fresh token,
	// and the device session is gone.
	a.as.RevokeAll("alice.test")
	if st, out, _ := two.call(http.MethodPost, "/api/auth/mobile-refresh", nil, t2); st != http.StatusUnauthorized || out["success"] != false || out["session_token"] != nil {
		t.Fatalf("rotation after revocation: %d %v", st, out)
	}
	if st, _, _ := two.call(http.MethodGet, "/api/whoami", nil, t2); st != http.StatusUnauthorized {
		t.Fatalf("the device session must be deleted: %d", st)
	}
}

func TestMobileConfigRefusesClaimableSchemes(t *testing.T) {
	for _, uri := range []string{"app://auth-callback", "myapp:/cb", "http://localhost/cb", "http://192.168.1.2/cb", "https:///cb", "com.example.app:/cb#x"} {
		store := memstore.New()
		client := indigoclient.New(oauth.NewPublicConfig("https://app.example/m.json", "https://app.example/oauth/callback", []string{"atproto"}), store, indigoclient.Options{})
		defer client.Close()
		_, err := ginoauth.New(ginoauth.Config{
			OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32), BaseURL: "https://app.example",
			Mobile: ginoauth.MobileConfig{RedirectURIs: []string{uri}},
		})
		var ce *ginoauth.ConfigurationError
		if !errors.As(err, &ce) || ce.Field != "Mobile.RedirectURIs" {
			t.Errorf("%s: want a configuration error, got %v", uri, err)
		}
	}
}
