package ginoauth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// A production setup: indigo's client as a public OAuth client, SQLite
// storage shared by the client and the Manager, the middleware on every
// route, the prebuilt handlers mounted, and one protected route.
func Example() {
	store, err := sqlitestore.Open("app.db", sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	oc := oauth.NewPublicConfig(
		"https://myapp.example/oauth-client-metadata.json",
		"https://myapp.example/oauth/callback",
		[]string{"atproto", "transition:generic"},
	)
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  indigoclient.New(oc, store, indigoclient.Options{}),
		Storage:      store,
		CookieSecret: os.Getenv("COOKIE_SECRET"), // at least 32 random bytes
		BaseURL:      "https://myapp.example",
	})
	if err != nil {
		log.Fatal(err)
	}

	r := gin.Default()
	r.Use(mgr.Middleware())
	mgr.Mount(r) // /login, /oauth/callback, /api/session, /api/logout, metadata
	r.GET("/me", mgr.RequireAuth(), func(c *gin.Context) {
		user, _ := ginoauth.CurrentUser(c)
		c.JSON(http.StatusOK, gin.H{"did": user.DID, "handle": user.Handle})
	})
	log.Fatal(r.Run(":8080"))
}

// A complete login, runnable offline: the app's OAuth client talks to a local
// authorization server + PDS (ginoauthtest), and a cookie-jar client plays
// the browser.
func Example_localLogin() {
	as := ginoauthtest.NewServer(ginoauthtest.Options{})
	defer as.Close()
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	base := "http://" + ln.Addr().String()
	store := memstore.New()
	oc := oauth.NewLocalhostConfig(base+"/oauth/callback", []string{"atproto"})
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient: indigoclient.New(oc, store, indigoclient.Options{
			HTTPClient: as.HTTPClient(), // reaches https://pds.test on loopback
			Directory:  as.Directory(),
		}),
		Storage:      store,
		CookieSecret: "example-secret-example-secret-example",
		BaseURL:      base,
	})
	if err != nil {
		log.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(mgr.Middleware())
	mgr.Mount(r)
	app := &httptest.Server{Listener: ln, Config: &http.Server{Handler: r}}
	app.Start()
	defer app.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, _ := browser.Get(base + "/login?handle=alice.test")
	resp.Body.Close()
	callback, _ := as.Consent(context.Background(), resp.Header.Get("Location"), "alice.test", true)
	resp, _ = browser.Get(callback)
	resp.Body.Close()
	fmt.Println("callback:", resp.StatusCode, resp.Header.Get("Location"))

	resp, _ = browser.Get(base + "/api/session")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("session:", resp.StatusCode, len(body) > 0)
	// Output:
	// callback: 302 /
	// session: 200 true
}

// Errors are typed; errors.As picks out the kind.
func ExampleNew_configurationError() {
	_, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  indigoclient.New(oauth.NewPublicConfig("https://a.example/m.json", "https://a.example/cb", []string{"atproto"}), memstore.New(), indigoclient.Options{}),
		Storage:      memstore.New(),
		CookieSecret: "too short",
		BaseURL:      "https://a.example",
	})
	var ce *ginoauth.ConfigurationError
	if errors.As(err, &ce) {
		fmt.Println(ce.Field)
	}
	// Output: CookieSecret
}

// Post-login return paths are checked after parsing; anything that could
// leave the site becomes "/".
func ExampleSafeReturnPath() {
	for _, p := range []string{"/settings?tab=2", "//evil.example", "/\\evil.example", "https://evil.example"} {
		fmt.Printf("%q -> %q\n", p, ginoauth.SafeReturnPath(p))
	}
	// Output:
	// "/settings?tab=2" -> "/settings?tab=2"
	// "//evil.example" -> "/"
	// "/\\evil.example" -> "/"
	// "https://evil.example" -> "/"
}

// Calling the user's PDS through the ready OAuth session (DPoP, nonces and
// token refresh are handled by the OAuth client).
func ExampleXRPCQuery() {
	var mgr *ginoauth.Manager // from ginoauth.New
	handler := func(c *gin.Context) {
		sess, err := mgr.OAuthSession(c)
		if err != nil {
			c.JSON(http.StatusUnauthorized, gin.H{"error": "login required"})
			return
		}
		var out struct {
			Handle string `json:"handle"`
		}
		if err := ginoauth.XRPCQuery(c.Request.Context(), sess, "com.atproto.server.getSession", url.Values{}, &out); err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": "PDS call failed"})
			return
		}
		c.JSON(http.StatusOK, out)
	}
	_ = handler
}

// The Manager's cookie store is a gin-contrib/sessions Store, usable for an
// app's own small string-valued session under another cookie name.
func ExampleNewCookieStore() {
	store, err := ginoauth.NewCookieStore([]byte("a-new-secret-of-at-least-32-bytes!!"), []byte("the-old-secret-still-opens-cookies!!"))
	if err != nil {
		log.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(sessions.Sessions("prefs", store))
	r.GET("/", func(c *gin.Context) {
		s := sessions.Default(c)
		s.Set("theme", "dark")
		_ = s.Save()
		c.Status(http.StatusNoContent)
	})
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	c := w.Result().Cookies()[0]
	fmt.Println(c.Name, c.HttpOnly, c.Value != "dark")
	// Output: prefs true true
}
