package ginoauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// fuzzManager is a Manager with the native-app flow on, over memory, whose
// client never reaches a network (every lookup fails fast).
func fuzzManager(f *testing.F) (*ginoauth.Manager, *gin.Engine) {
	store := memstore.New()
	client := indigoclient.New(oauth.NewPublicConfig("https://app.example/m.json", "https://app.example/oauth/callback", []string{"atproto"}), store,
		indigoclient.Options{HTTPClient: &http.Client{Transport: refuse{}}, Directory: nowhere{}})
	f.Cleanup(func() { _ = client.Close() })
	m, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32), BaseURL: "https://app.example",
		Mobile: ginoauth.MobileConfig{RedirectURIs: []string{"com.example.app:/cb"}},
		// Thousands of requests from one address: the targets are the
		// handlers behind the limits, which would answer 429 after 60.
		RateLimits: ginoauth.RateLimits{Disabled: true}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = m.Close() })
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(ginoauth.Middleware(m))
	m.Mount(r)
	return m, r
}

type refuse struct{}

func (refuse) RoundTrip(*http.Request) (*http.Response, error) { return nil, context.Canceled }

// serveFuzz answers one request and checks it is answered, never with a 5xx
// other than 503/502 (and never a panic, which fails the fuzzer by itself).
func serveFuzz(t *testing.T, r *gin.Engine, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code >= 500 && w.Code != http.StatusBadGateway && w.Code != http.StatusServiceUnavailable {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, w.Code, w.Body)
	}
	return w
}

// Any Authorization header: never a panic; a bearer token that is not one
// is refused.
func FuzzBearerToken(f *testing.F) {
	_, r := fuzzManager(f)
	for _, s := range []string{"Bearer x", "Bearer " + strings.Repeat("A", 43), "bearer  ", "Basic abc", "Bearer \x00", "DPoP tok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		req := httptest.NewRequest(http.MethodGet, "/api/session", nil)
		req.Header.Set("Authorization", h)
		if w := serveFuzz(t, r, req); w.Code != http.StatusUnauthorized {
			t.Fatalf("no session exists, yet %q got %d %s", h, w.Code, w.Body)
		}
	})
}

// Any callback query: a 4xx answer, never a panic or a session.
func FuzzCallbackParams(f *testing.F) {
	_, r := fuzzManager(f)
	for _, s := range []string{"state=x&code=y&iss=https://pds.test", "state=&state=a", "error=access_denied&state=s", "state=" + strings.Repeat("s", 600), "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest(http.MethodGet, "/oauth/callback", nil)
		req.URL.RawQuery = q
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code == http.StatusFound || strings.Contains(strings.Join(w.Result().Header.Values("Set-Cookie"), ";"), "sid=") {
			t.Fatalf("callback %q: %d, a session out of nothing", q, w.Code)
		}
	})
}

// Any body to the native app's code exchange: 400, never a token.
func FuzzMobileCodeExchange(f *testing.F) {
	_, r := fuzzManager(f)
	for _, s := range []string{`{"code":"x","code_verifier":"` + strings.Repeat("v", 43) + `","redirect_uri":"com.example.app:/cb"}`, `{}`, `[`, `{"code":null}`, strings.Repeat("{", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/auth/mobile-token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "session_token") {
			t.Fatalf("mobile-token %q: %d %s", body, w.Code, w.Body)
		}
	})
}

// nowhere is a directory that knows no one.
type nowhere struct{}

func (nowhere) LookupHandle(context.Context, syntax.Handle) (*identity.Identity, error) {
	return nil, identity.ErrHandleNotFound
}
func (nowhere) LookupDID(context.Context, syntax.DID) (*identity.Identity, error) {
	return nil, identity.ErrDIDNotFound
}
func (nowhere) Lookup(context.Context, syntax.AtIdentifier) (*identity.Identity, error) {
	return nil, identity.ErrHandleNotFound
}
func (nowhere) Purge(context.Context, syntax.AtIdentifier) error { return nil }

// Any body, with any Content-Type, to the native app's login start: a 4xx
// (or 502: the fuzz client reaches no server), never a panic, another 5xx
// or an authorization URL.
func FuzzMobileStart(f *testing.F) {
	_, r := fuzzManager(f)
	challenge := strings.Repeat("c", 43)
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"handle":"alice.bsky.social","code_challenge":"` + challenge + `","code_challenge_method":"S256","redirect_uri":"com.example.app:/cb","state":"s"}`},
		{"application/json", `{"server":"bsky.social","code_challenge":"` + challenge + `","code_challenge_method":"S256","redirect_uri":"com.example.app:/cb","state":"s"}`},
		{"application/json", `{"handle":"a","handle":"b"}`},
		{"application/json; charset=utf-8", `{"Handle":"x"}`},
		{"text/plain", `{}`},
		{"", ``},
		{"application/json", `{"state":null,"handle":1}`},
		{"application/json", `[{}]`},
	} {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/auth/mobile-start", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		w := serveFuzz(t, r, req)
		switch {
		case w.Code == http.StatusOK || strings.Contains(w.Body.String(), "authUrl"):
			t.Fatalf("mobile-start %q %q: %d %s; no server can be reached, so no login can start", contentType, body, w.Code, w.Body)
		case w.Code != http.StatusBadRequest && w.Code != http.StatusUnsupportedMediaType && w.Code != http.StatusBadGateway:
			t.Fatalf("mobile-start %q %q: %d %s", contentType, body, w.Code, w.Body)
		}
	})
}

// Any Authorization headers and body to the token rotation routes (POST
// mobile-refresh and the Deno library's GET /mobile/refresh-token), against
// a real native login whose token was rotated once: never a panic or a 5xx
// other than 503, and a new token only ever the one successor of that
// token.
func FuzzMobileRefresh(f *testing.F) {
	a := newTestApp(f, nil, func(c *ginoauth.Config) { c.Mobile.RedirectURIs = []string{appRedirect} })
	token := newNativeApp(f, a).login("alice.test")
	first := rotate(a, token, false)
	if first.status != http.StatusOK {
		f.Fatalf("the first rotation: %+v", first)
	}
	for _, s := range []struct {
		auth, second string
		legacy       bool
		body         string
	}{
		{"Bearer " + token, "", false, ""},
		{"Bearer " + token, "", true, ""},
		{"bearer  " + token + " ", "", false, `{"x":1}`},
		{"Bearer " + token, "Bearer " + token, false, ""},
		{"Bearer " + strings.Repeat("A", 43), "", true, ""},
		{"Basic YTpi", "", false, ""},
		{"Bearer", "", false, ""},
		{"", "", true, "token=" + token},
	} {
		f.Add(s.auth, s.second, s.legacy, s.body)
	}
	f.Fuzz(func(t *testing.T, auth, second string, legacy bool, body string) {
		method, path := http.MethodPost, "/api/auth/mobile-refresh"
		if legacy {
			method, path = http.MethodGet, "/mobile/refresh-token"
		}
		req, err := http.NewRequest(method, a.Server.URL+path+"?access_token="+url.QueryEscape(token), strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		for _, h := range []string{auth, second} {
			if h != "" && !strings.ContainsFunc(h, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				req.Header.Add("Authorization", h)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			SessionToken string `json:"session_token"`
			Payload      struct{ Sid string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		switch resp.StatusCode {
		case http.StatusOK:
			if got := out.SessionToken + out.Payload.Sid; got != first.token {
				t.Fatalf("%q %q: a token other than the one successor: %.8s…", auth, second, got)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusServiceUnavailable:
		default:
			t.Fatalf("%q %q legacy %v: %d", auth, second, legacy, resp.StatusCode)
		}
	})
}
