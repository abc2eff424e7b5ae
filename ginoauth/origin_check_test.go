package ginoauth_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// originApp is an app at https://app.example that trusts
// https://www.app.example (a sibling on its site) and
// https://partner.example (another site), served directly and behind a
// reverse proxy that rewrites Host to the app's own address, as most
// proxies in front of an app do. Its OAuth client never reaches a network.
type originApp struct {
	direct, proxy *httptest.Server
}

func newOriginApp(t *testing.T) *originApp {
	t.Helper()
	store := memstore.New()
	client := indigoclient.New(oauth.NewPublicConfig("https://app.example/oauth-client-metadata.json", "https://app.example/oauth/callback", []string{"atproto"}), store,
		indigoclient.Options{HTTPClient: &http.Client{Transport: refuse{}}, Directory: nowhere{}})
	t.Cleanup(func() { _ = client.Close() })
	m, err := ginoauth.New(ginoauth.Config{
		OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32), BaseURL: "https://app.example",
		AllowedOrigins: []string{"https://www.app.example", "https://partner.example"},
		Mobile:         ginoauth.MobileConfig{RedirectURIs: []string{appRedirect}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	r := gin.New()
	r.Use(ginoauth.Middleware(m))
	m.Mount(r)
	r.POST("/app/act", ginoauth.RequireSameOrigin(m), func(c *gin.Context) { c.String(http.StatusOK, "done") })
	direct := httptest.NewServer(r)
	t.Cleanup(direct.Close)
	target, _ := url.Parse(direct.URL)
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target) // the app sees Host 127.0.0.1:<port>, not app.example
		pr.SetXForwarded()
	}})
	t.Cleanup(proxy.Close)
	return &originApp{direct: direct, proxy: proxy}
}

// send sends what a browser at app.example's public address sends.
func (o *originApp) send(t *testing.T, viaProxy bool, method, path, body string, h http.Header) (int, string) {
	t.Helper()
	srv := o.direct
	if viaProxy {
		srv = o.proxy
	}
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.example" // the browser's address bar
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// browserHeaders are the headers today's browsers send with a request a
// page makes (fetch or a form post), by where the page is.
var browserHeaders = []struct {
	name   string
	header http.Header
	pass   bool
}{
	{"same origin", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"https://app.example"}}, true},
	{"allowed sibling subdomain", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://www.app.example"}}, true},
	{"allowed other site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://partner.example"}}, true},
	{"other sibling subdomain", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://evil.app.example"}}, false},
	{"hostile site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, false},
	{"hostile site, null origin", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"null"}}, false},
	{"typed or bookmarked (none)", http.Header{"Sec-Fetch-Site": {"none"}}, true},
	{"old browser, same origin", http.Header{"Origin": {"https://app.example"}}, true},
	{"old browser, allowed origin", http.Header{"Origin": {"https://www.app.example"}}, true},
	{"old browser, hostile origin", http.Header{"Origin": {"https://evil.example"}}, false},
	{"old browser, other sibling", http.Header{"Origin": {"https://evil.app.example"}}, false},
	{"not a browser", http.Header{}, true},
}

// The state-changing routes (the app's behind RequireSameOrigin and the
// prebuilt ones) answer every kind of page as the cross-origin check says,
// with the headers today's browsers send, directly and behind a proxy that
// rewrites Host: allowed origins pass even though their requests say
// same-site or cross-site, hostile ones are refused.
func TestOriginCheckWithBrowserHeaders(t *testing.T) {
	o := newOriginApp(t)
	routes := []struct {
		method, path, body, contentType string
		passStatus                      int
	}{
		{http.MethodPost, "/app/act", "", "", http.StatusOK},
		{http.MethodPost, "/api/logout", "", "", http.StatusOK},
		{http.MethodPost, "/login", "handle=alice.bsky.social", "application/x-www-form-urlencoded", http.StatusBadRequest}, // no such account: the check passed
		{http.MethodPost, "/api/auth/mobile-token", `{"code":"x"}`, "application/json", http.StatusBadRequest},
		{http.MethodPost, "/api/auth/mobile-start", `{"handle":"alice.bsky.social"}`, "application/json", http.StatusBadRequest},
		{http.MethodPost, "/api/sessions/end-all", "", "", http.StatusUnauthorized}, // nobody logged in: the check passed
	}
	for _, viaProxy := range []bool{false, true} {
		for _, bh := range browserHeaders {
			for _, rt := range routes {
				h := bh.header.Clone()
				if rt.contentType != "" {
					h.Set("Content-Type", rt.contentType)
				}
				st, body := o.send(t, viaProxy, rt.method, rt.path, rt.body, h)
				refused := st == http.StatusForbidden && strings.Contains(body, `"cross_site_request"`)
				if bh.pass && (refused || st != rt.passStatus) || !bh.pass && !refused {
					t.Errorf("proxy %v, %s, %s %s: %d %s; want it to pass: %v", viaProxy, bh.name, rt.method, rt.path, st, body, bh.pass)
				}
			}
		}
	}
}

// A login link followed from another page (a GET navigation, which carries
// Sec-Fetch-Site but no Origin) shows the library's confirmation page,
// unless it came from the app's own pages, was typed, or was not made by a
// browser. The allowed origins' links are confirmed too: links carry no
// Origin to tell them by.
func TestLoginLinkConfirmation(t *testing.T) {
	o := newOriginApp(t)
	for _, viaProxy := range []bool{false, true} {
		for _, tc := range []struct {
			site    string
			confirm bool
		}{
			{"cross-site", true}, {"same-site", true}, {"same-origin", false}, {"none", false}, {"", false},
		} {
			h := http.Header{"Accept": {"text/html"}}
			if tc.site != "" {
				h.Set("Sec-Fetch-Site", tc.site)
			}
			st, body := o.send(t, viaProxy, http.MethodGet, "/login?handle=alice.bsky.social", "", h)
			confirmed := st == http.StatusOK && strings.Contains(body, "Another site sent you here")
			if confirmed != tc.confirm || !tc.confirm && st != http.StatusBadRequest {
				t.Errorf("proxy %v, Sec-Fetch-Site %q: %d %.80s; want confirmation %v", viaProxy, tc.site, st, body, tc.confirm)
			}
		}
	}
}
