package ginoauth_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

const deploySecret = "an-example-cookie-secret-of-32-bytes!!"

// deployConfig is a Config for client oc at baseURL.
func deployConfig(t *testing.T, oc oauth.ClientConfig, baseURL string) ginoauth.Config {
	t.Helper()
	store := memstore.New()
	client := indigoclient.New(oc, store, indigoclient.Options{})
	t.Cleanup(func() { _ = client.Close() })
	return ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: deploySecret, BaseURL: baseURL}
}

// Each misconfiguration a new user made is refused by New with a message
// that names both values and the fix.
func TestNewRefusesWhatTheClientContradicts(t *testing.T) {
	scopes := []string{"atproto"}
	public := oauth.NewPublicConfig("https://myapp.example/oauth-client-metadata.json", "https://myapp.example/oauth/callback", scopes)
	for _, tc := range []struct {
		name    string
		client  oauth.ClientConfig
		base    string
		change  func(*ginoauth.Config)
		message string
	}{
		{"wrong port", indigoclient.LocalhostConfig("http://127.0.0.1:9090/oauth/callback", scopes), "http://127.0.0.1:8080", nil,
			"ginoauth: invalid config: BaseURL: is http://127.0.0.1:8080 but the OAuth client's redirect URI http://127.0.0.1:9090/oauth/callback is on http://127.0.0.1:9090: " +
				"a login started on one origin would come back to the other without its flow cookie and be refused; set BaseURL to http://127.0.0.1:9090, " +
				"or build the client with the redirect URI http://127.0.0.1:8080/oauth/callback"},
		{"localhost instead of 127.0.0.1", indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", scopes), "http://localhost:8080", nil,
			"ginoauth: invalid config: BaseURL: is http://localhost:8080 but the OAuth client's redirect URI http://127.0.0.1:8080/oauth/callback is on http://127.0.0.1:8080: " +
				"a login started on one origin would come back to the other without its flow cookie and be refused; set BaseURL to http://127.0.0.1:8080 " +
				"(loopback redirect URIs are IP literals, RFC 8252 section 8.3: open the app at http://127.0.0.1:8080, not on localhost), " +
				"or build the client with the redirect URI http://localhost:8080/oauth/callback"},
		{"https on loopback", indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", scopes), "https://127.0.0.1:8080", nil,
			"ginoauth: invalid config: BaseURL: is https://127.0.0.1:8080 (https) but the OAuth client is a loopback development client (client id http://localhost...), " +
				"whose logins come back to the plain http redirect URI http://127.0.0.1:8080/oauth/callback (RFC 8252 loopback redirects are http); set BaseURL to http://127.0.0.1:8080"},
		{"https client id with an http BaseURL", public, "http://127.0.0.1:8080", nil,
			"ginoauth: invalid config: BaseURL: is http://127.0.0.1:8080 (plain http) but the OAuth client's id https://myapp.example/oauth-client-metadata.json is an https metadata URL, " +
				"whose logins come back to https://myapp.example/oauth/callback; set BaseURL to https://myapp.example, or for development on this machine build the client with " +
				`indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", scopes)`},
		{"wrong callback route", public, "https://myapp.example", func(c *ginoauth.Config) { c.Routes.Callback = "/auth/done" },
			`ginoauth: invalid config: Routes.Callback: is "/auth/done" but the OAuth client's redirect URI https://myapp.example/oauth/callback has the path "/oauth/callback": ` +
				`the authorization server would send every login to a route nothing answers (404); set Routes.Callback to "/oauth/callback", ` +
				"or build the client with the redirect URI https://myapp.example/auth/done"},
		{"native loopback redirect on localhost", public, "https://myapp.example", func(c *ginoauth.Config) { c.Mobile.RedirectURIs = []string{"http://localhost:7000/cb"} },
			`ginoauth: invalid config: Mobile.RedirectURIs: "http://localhost:7000/cb": a loopback redirect URI names the loopback IP, not localhost, which may resolve elsewhere (RFC 8252 section 8.3); use http://127.0.0.1:7000/cb`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := deployConfig(t, tc.client, tc.base)
			if tc.change != nil {
				tc.change(&cfg)
			}
			_, err := ginoauth.New(cfg)
			if err == nil || err.Error() != tc.message {
				t.Fatalf("got  %v\nwant %s", err, tc.message)
			}
		})
	}
}

// Loopback development keeps working: a loopback client on 127.0.0.1 (with
// or without a port in its client id), a callback under a group prefix.
func TestNewAcceptsConsistentDeployments(t *testing.T) {
	scopes := []string{"atproto"}
	for name, cfg := range map[string]ginoauth.Config{
		"loopback":             deployConfig(t, indigoclient.LocalhostConfig("http://127.0.0.1:8080/oauth/callback", scopes), "http://127.0.0.1:8080"),
		"loopback, no port":    deployConfig(t, indigoclient.LocalhostConfig("http://127.0.0.1/oauth/callback", scopes), "http://127.0.0.1"),
		"loopback IPv6":        deployConfig(t, indigoclient.LocalhostConfig("http://[::1]:8080/oauth/callback", scopes), "http://[::1]:8080"),
		"public":               deployConfig(t, oauth.NewPublicConfig("https://myapp.example/oauth-client-metadata.json", "https://myapp.example/oauth/callback", scopes), "https://myapp.example"),
		"public, default port": deployConfig(t, oauth.NewPublicConfig("https://myapp.example/m.json", "https://myapp.example:443/auth/oauth/callback", scopes), "https://myapp.example"),
	} {
		mgr, err := ginoauth.New(cfg)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		_ = mgr.Close()
	}
}

// A callback mounted under a prefix the redirect URI does not have is
// logged at Mount, naming both paths.
func TestMountLogsACallbackMountedElsewhere(t *testing.T) {
	cfg := deployConfig(t, oauth.NewPublicConfig("https://myapp.example/m.json", "https://myapp.example/auth/oauth/callback", []string{"atproto"}), "https://myapp.example")
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	mgr, err := ginoauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	mgr.Mount(gin.New().Group("/auth")) // right
	if strings.Contains(logs.String(), "mounted at another path") {
		t.Fatalf("a callback at the redirect URI's path was logged: %s", logs.String())
	}
	mgr.Mount(gin.New().Group("/api")) // wrong
	if want := `level=ERROR msg="the callback is mounted at another path than the OAuth client's redirect URI: every login would end in 404; mount the routes so that the callback is at the redirect URI's path, or change Routes.Callback" mounted=/api/oauth/callback redirect_uri=https://myapp.example/auth/oauth/callback`; !strings.Contains(logs.String(), want) {
		t.Fatalf("logs:\n%s\nwant %s", logs.String(), want)
	}
}

// A cross-origin refusal names what was received and what was expected in
// a warning, and on loopback the answer names the likely fix.
func TestCrossOriginRefusalSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		base, origin, message string
	}{
		{"http://127.0.0.1:8080", "http://localhost:8080",
			"this request came from another site, so it was refused (BaseURL is http://127.0.0.1:8080 but the request came from http://localhost:8080: open the app at http://127.0.0.1:8080, or change BaseURL)"},
		{"https://myapp.example", "https://evil.example", "this request came from another site, so it was refused"},
	} {
		cb := tc.base + "/oauth/callback"
		oc := indigoclient.LocalhostConfig(cb, []string{"atproto"})
		if !strings.HasPrefix(tc.base, "http://") {
			oc = oauth.NewPublicConfig(tc.base+"/m.json", cb, []string{"atproto"})
		}
		cfg := deployConfig(t, oc, tc.base)
		var logs bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		mgr, err := ginoauth.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := gin.New()
		r.Use(ginoauth.Middleware(mgr))
		mgr.Mount(r)
		req := httptest.NewRequest(http.MethodPost, tc.base+"/api/logout", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if want := `{"code":"cross_site_request","error":"` + tc.message + `"}`; w.Code != http.StatusForbidden || w.Body.String() != want {
			t.Errorf("%s: %d %s\nwant %s", tc.base, w.Code, w.Body, want)
		}
		u, _ := url.Parse(tc.base)
		want := `level=WARN msg="cross-origin request refused" path=/api/logout method=POST origin=` + tc.origin + ` sec_fetch_site=cross-site host=` + u.Host + ` expected_origin=` + tc.base + ` allowed_origins=[]`
		if !strings.Contains(logs.String(), want) {
			t.Errorf("%s: logs:\n%s\nwant %s", tc.base, logs.String(), want)
		}
		_ = mgr.Close()
	}
}

// selfCheckApp is an app with the self-check's routes, serving handler
// wrap(app) on ln; baseURL is where its clients reach it (ln's own address
// unless a proxy is in front).
func selfCheckApp(t *testing.T, oc oauth.ClientConfig, baseURL string, configure func(*ginoauth.Config)) (*ginoauth.Manager, *gin.Engine) {
	t.Helper()
	cfg := deployConfig(t, oc, baseURL)
	if configure != nil {
		configure(&cfg)
	}
	mgr, err := ginoauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Close() })
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	return mgr, r
}

func listenLoopback(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

func serveOn(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
}

func TestSelfCheckLoopback(t *testing.T) {
	ln, base := listenLoopback(t)
	mgr, r := selfCheckApp(t, indigoclient.LocalhostConfig(base+"/oauth/callback", []string{"atproto", "transition:generic"}), base, nil)
	serveOn(t, ln, r)
	rep := mgr.SelfCheck(context.Background(), nil)
	if err := rep.Err(); err != nil {
		t.Fatalf("%v\n%s", err, rep)
	}
	for _, want := range []string{
		"the redirect URI " + base + "/oauth/callback reaches this app's callback",
		"requests arrive with the origin " + base,
		"the loopback client id names the redirect URI " + base + "/oauth/callback",
		"the loopback client id declares the scopes atproto transition:generic",
	} {
		if !slices.Contains(rep.Checked, want) {
			t.Errorf("not checked: %s\n%s", want, rep)
		}
	}
	if want := "client metadata and JWKS: no authorization server fetches a loopback development client's metadata (client id http://localhost...); checked the client id's redirect_uri and scope instead"; !slices.Contains(rep.Skipped, want) {
		t.Errorf("not said: %s\n%s", want, rep)
	}
}

// A proxy that neither passes Host nor sets X-Forwarded-*: the app sees its
// own address; with the headers but without SetTrustedProxies, Gin ignores
// X-Forwarded-For.
func TestSelfCheckBehindAProxy(t *testing.T) {
	proxyLn, proxyURL := listenLoopback(t)
	var target atomic.Pointer[url.URL]
	var forward atomic.Bool
	serveOn(t, proxyLn, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target.Load())
		if forward.Load() {
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-For", "203.0.113.7") // as if from the internet
			pr.Out.Host = pr.In.Host
		}
	}})
	// Two instances of the app behind it: one that trusts another proxy,
	// one that trusts this one.
	start := func(trusted string) (*ginoauth.Manager, *url.URL) {
		ln, appURL := listenLoopback(t)
		mgr, r := selfCheckApp(t, indigoclient.LocalhostConfig(proxyURL+"/oauth/callback", []string{"atproto"}), proxyURL, nil)
		if err := r.SetTrustedProxies([]string{trusted}); err != nil {
			t.Fatal(err)
		}
		serveOn(t, ln, r)
		u, _ := url.Parse(appURL)
		return mgr, u
	}
	untrusting, untrustingURL := start("10.0.0.1")
	trusting, trustingURL := start("127.0.0.1")

	target.Store(untrustingURL)
	rep := untrusting.SelfCheck(context.Background(), nil)
	want := []ginoauth.SelfCheckProblem{{
		Check: "the origin the app sees for " + proxyURL + "/oauth/callback", Expected: proxyURL + " (BaseURL)",
		Found: "http://" + untrustingURL.Host + " (Host " + untrustingURL.Host + ", X-Forwarded-Proto absent, X-Forwarded-Host absent)",
		Fix:   "have the proxy pass the original Host (or X-Forwarded-Host) and X-Forwarded-Proto: URLs built from the request (a client_id, a DPoP htu, a redirect) would name the wrong origin",
	}}
	if !slices.Equal(rep.Problems, want) {
		t.Fatalf("without forwarded headers:\n%s\nwant %+v", rep, want)
	}

	forward.Store(true)
	rep = untrusting.SelfCheck(context.Background(), nil)
	want = []ginoauth.SelfCheckProblem{{
		Check: "the client address behind the proxy", Expected: "Gin to take it from X-Forwarded-For", Found: "it ignores X-Forwarded-For from the proxy at 127.0.0.1",
		Fix: `r.SetTrustedProxies([]string{"127.0.0.1"}): else every client counts as the proxy for the login rate limits`,
	}}
	if !slices.Equal(rep.Problems, want) {
		t.Fatalf("with forwarded headers, untrusted proxy:\n%s\nwant %+v", rep, want)
	}
	if !slices.Contains(rep.Checked, "requests arrive with the origin "+proxyURL) {
		t.Fatalf("origin not checked through the proxy: %s", rep)
	}

	target.Store(trustingURL)
	if rep = trusting.SelfCheck(context.Background(), nil); rep.Err() != nil {
		t.Fatalf("with the proxy trusted: %v", rep.Err())
	}
}

// A callback mounted elsewhere than the redirect URI's path answers 404,
// and the self-check says so; an address nothing listens on is unreachable,
// not a wrong document.
func TestSelfCheckFindsTheCallbackMissingAndTheAppUnreachable(t *testing.T) {
	ln, base := listenLoopback(t)
	mgr, r := selfCheckApp(t, indigoclient.LocalhostConfig(base+"/oauth/callback", []string{"atproto"}), base, func(c *ginoauth.Config) { c.Routes.Callback = "/callback" })
	serveOn(t, ln, r)
	rep := mgr.SelfCheck(context.Background(), nil)
	want := ginoauth.SelfCheckProblem{Check: "the callback at the redirect URI " + base + "/oauth/callback", Expected: "this app's callback", Found: "404: nothing is mounted there",
		Fix: `Mount the routes so that the callback (Routes.Callback "/callback") is at the redirect URI's path`}
	if len(rep.Problems) != 1 || rep.Problems[0] != want {
		t.Fatalf("%s\nwant %+v", rep, want)
	}

	dead, deadURL := listenLoopback(t)
	_ = dead.Close() // nothing listens there now
	mgr2, _ := selfCheckApp(t, indigoclient.LocalhostConfig(deadURL+"/oauth/callback", []string{"atproto"}), deadURL, nil)
	rep = mgr2.SelfCheck(context.Background(), nil)
	if len(rep.Problems) != 1 || rep.Problems[0].Check != "reach "+deadURL+"/oauth/callback" || !strings.HasPrefix(rep.Problems[0].Found, "unreachable from here: ") ||
		!strings.Contains(rep.Problems[0].Fix, "(hairpin NAT)") {
		t.Fatalf("unreachable: %s", rep)
	}
}

// The metadata document as an authorization server reads it: served with
// the wrong client_id or content type, each is named; a confidential
// client's JWKS publishes its signing key.
func TestSelfCheckMetadata(t *testing.T) {
	var override atomic.Pointer[http.HandlerFunc]
	var app atomic.Pointer[gin.Engine]
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := override.Load(); o != nil && r.URL.Path == "/oauth-client-metadata.json" {
			(*o)(w, r)
			return
		}
		app.Load().ServeHTTP(w, r)
	}))
	srv.StartTLS()
	defer srv.Close()
	base := srv.URL
	oc := oauth.NewPublicConfig(base+"/oauth-client-metadata.json", base+"/oauth/callback", []string{"atproto", "transition:generic"})
	key, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	if err := oc.SetClientSecret(key, "k1"); err != nil {
		t.Fatal(err)
	}
	mgr, r := selfCheckApp(t, oc, base, nil)
	app.Store(r)
	rep := mgr.SelfCheck(context.Background(), srv.Client())
	if err := rep.Err(); err != nil {
		t.Fatalf("%v\n%s", err, rep)
	}
	for _, want := range []string{"client_id equals the URL", "dpop_bound_access_tokens is true", "scope declares atproto transition:generic", "jwks in the document publishes kids k1"} {
		if !slices.Contains(rep.Checked, want) {
			t.Errorf("not checked: %s\n%s", want, rep)
		}
	}

	// What a proxy or a hand-written document gets wrong.
	wrong := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		app.Load().ServeHTTP(rec, r)
		doc := strings.Replace(rec.Body.String(), base+"/oauth-client-metadata.json", "http://internal:8080/oauth-client-metadata.json", 1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(doc))
	})
	override.Store(&wrong)
	rep = mgr.SelfCheck(context.Background(), srv.Client())
	want := []ginoauth.SelfCheckProblem{
		{Check: "client metadata at " + base + "/oauth-client-metadata.json: Content-Type", Expected: "application/json", Found: `"text/plain; charset=utf-8"`,
			Fix: "serve it as application/json (a proxy or static file server may change it)"},
		{Check: "client_id in the document", Expected: base + "/oauth-client-metadata.json", Found: `"http://internal:8080/oauth-client-metadata.json"`,
			Fix: "the client_id must be exactly the URL the document is served at; build it from the public BaseURL, never from the request's Host (which a proxy changes)"},
	}
	if !slices.Equal(rep.Problems, want) {
		t.Fatalf("%s\nwant %+v", rep, want)
	}

	// A redirect (http to https, a trailing slash) is not followed.
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/oauth-client-metadata.json/", http.StatusMovedPermanently)
	})
	override.Store(&redirect)
	rep = mgr.SelfCheck(context.Background(), srv.Client())
	if len(rep.Problems) != 1 || rep.Problems[0].Found != "301 redirecting to /oauth-client-metadata.json/" {
		t.Fatalf("redirect: %s", rep)
	}
}
