package ginoauthtest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// myApp stands for the app under test: a Gin router on the library whose
// OAuth client reaches the test server through hc and dir.
func myApp(t *testing.T, baseURL string, hc *http.Client, dir identity.Directory) http.Handler {
	store := memstore.New()
	client := indigoclient.New(indigoclient.LocalhostConfig(baseURL+"/oauth/callback", []string{"atproto"}), store,
		indigoclient.Options{HTTPClient: hc, Directory: dir})
	t.Cleanup(func() { _ = client.Close() })
	mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: "0123456789abcdef0123456789abcdef", BaseURL: baseURL,
		LocalDomains: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	r.GET("/me", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		c.String(http.StatusOK, u.Handle)
	})
	return r
}

// An end-to-end test of an app, as a user of the library writes it: a
// server, an account, the app, a browser, a login.
func TestBrowserLogsIntoAnApp(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app := httptest.NewUnstartedServer(nil)
	app.Config.Handler = myApp(t, "http://"+app.Listener.Addr().String(), srv.HTTPClient(), srv.Directory())
	app.Start()
	defer app.Close()

	b := ginoauthtest.NewBrowser(t, app.URL, srv.Consent)
	if r := b.Login("alice.test", "/me"); r.Status != http.StatusFound || r.Header.Get("Location") != "/me" {
		t.Fatalf("callback: %d %s", r.Status, r.Header.Get("Location"))
	}
	if r := b.Get("/me"); r.Status != http.StatusOK || string(r.Body) != "alice.test" {
		t.Fatalf("/me: %d %s", r.Status, r.Body)
	}
	if r := ginoauthtest.NewBrowser(t, app.URL, srv.Consent).Get("/me"); r.Status != http.StatusUnauthorized {
		t.Fatalf("/me without logging in: %d", r.Status)
	}
}
