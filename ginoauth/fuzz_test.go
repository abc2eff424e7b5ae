package ginoauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
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
	client := indigoclient.New(oauth.NewPublicConfig("https://app.example/m.json", "https://app.example/cb", []string{"atproto"}), store,
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
