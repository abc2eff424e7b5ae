package ginoauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"time"

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
	r.Use(ginoauth.Middleware(mgr)) // loads the session; never blocks anonymous requests
	mgr.Mount(r)                    // /login, /oauth/callback, /api/session, /api/logout, metadata
	r.GET("/me", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
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
		LocalDomains: []string{"test"}, // the local server's pds.test and alice.test
	})
	if err != nil {
		log.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
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

// Calling the user's PDS through the ready OAuth session: Do adds the
// DPoP-bound access token, answers nonce challenges and refreshes the tokens
// (coordinated across instances). indigoclient.APIClient(sess) gives indigo's
// typed XRPC client over the same session.
func ExampleManager_OAuthSession() {
	var mgr *ginoauth.Manager // from ginoauth.New
	handler := func(c *gin.Context) {
		sess, err := mgr.OAuthSession(c)
		if err != nil {
			r := ginoauth.ErrorResponseFor(err) // 401 when the login has ended
			c.JSON(r.Status, gin.H{"error": r.Message, "code": r.Code})
			return
		}
		req, _ := http.NewRequestWithContext(c.Request.Context(), http.MethodGet,
			sess.HostURL()+"/xrpc/com.atproto.server.getSession", nil)
		resp, err := sess.Do(req)
		if err != nil {
			c.JSON(ginoauth.ErrorResponseFor(err).Status, gin.H{"error": "PDS call failed"})
			return
		}
		defer resp.Body.Close()
		var out struct {
			Handle string `json:"handle"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		c.JSON(http.StatusOK, out)
	}
	_ = handler
}

// Routes that need a permission the login may not have granted: a request
// without it gets 403 insufficient_scope with the URL of a step-up login
// that asks for it.
func ExampleRequireScopes() {
	var mgr *ginoauth.Manager // from ginoauth.New
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
	r.POST("/notes", ginoauth.RequireScopes(mgr, "repo:com.example.note?action=create"), func(c *gin.Context) {
		user, _ := ginoauth.CurrentUser(c)
		c.JSON(http.StatusCreated, gin.H{"by": user.DID})
	})
}

// The app's own state-changing routes get the same cross-site request
// check as the prebuilt ones.
func ExampleRequireSameOrigin() {
	var mgr *ginoauth.Manager // from ginoauth.New
	r := gin.New()
	api := r.Group("/api", ginoauth.RequireSameOrigin(mgr), ginoauth.RequireAuth(mgr))
	api.POST("/settings", func(c *gin.Context) { c.Status(http.StatusNoContent) })
}

// An account's devices: list them (with the current one marked), and end
// one from another device.
func ExampleManager_SessionsOf() {
	var mgr *ginoauth.Manager // from ginoauth.New, on a store with a storage.Indexer
	r := gin.New()
	r.GET("/devices", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
		user, _ := ginoauth.CurrentUser(c)
		list, err := mgr.SessionsOf(c.Request.Context(), user.DID, user)
		if err != nil {
			c.JSON(ginoauth.ErrorResponseFor(err).Status, gin.H{"error": "try again"})
			return
		}
		c.JSON(http.StatusOK, list) // each with Ref, Kind, Device, LastSeen, Current
	})
}

// The Manager's cookie store is a gin-contrib/sessions Store, usable for an
// app's own small session under another cookie name.
// An account switcher: the browser's accounts, with the app's own display
// names and pictures (the library fetches no profiles).
func ExampleManager_Accounts() {
	profiles := map[string][2]string{} // the app's cache: DID -> name, picture URL
	mgr, _ := ginoauth.New(ginoauth.Config{
		// ... OAuthClient, Storage, CookieSecret, BaseURL ...
		MaxAccounts: 3,
		DescribeAccounts: func(_ context.Context, accounts []ginoauth.Account) {
			for i := range accounts {
				p := profiles[accounts[i].DID]
				accounts[i].Name, accounts[i].Avatar = p[0], p[1]
			}
		},
	})
	r := gin.New()
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r) // /login?add=1, POST /api/accounts/switch, /api/accounts/logout
	r.GET("/switcher", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
		accounts, err := mgr.Accounts(c) // the active one first
		if err != nil {
			c.JSON(ginoauth.ErrorResponseFor(err).Status, gin.H{"error": "try again"})
			return
		}
		c.JSON(http.StatusOK, accounts)
	})
}

func ExampleManager_CookieStore() {
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  indigoclient.New(oauth.NewLocalhostConfig("http://127.0.0.1:8080/oauth/callback", []string{"atproto"}), memstore.New(), indigoclient.Options{}),
		Storage:      memstore.New(),
		CookieSecret: "a-new-secret-of-at-least-32-bytes!!",
		BaseURL:      "http://127.0.0.1:8080",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(sessions.Sessions("prefs", mgr.CookieStore()))
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

// Following identity changes: the checks run in the background at most
// every IdentityCheckInterval (default one hour); the app learns of a new
// handle, a move or an account ended at its PDS from its events, and may
// keep a deactivated account's sessions to offer reactivation.
func ExampleConfig_identityChecks() {
	cfg := ginoauth.Config{
		// OAuthClient (indigoclient's checks identities), Storage, ...
		IdentityCheckInterval:   30 * time.Minute,
		KeepDeactivatedSessions: true, // User.AccountStatus says "deactivated"
		OnEvent: func(e ginoauth.Event) {
			switch {
			case e.Type == ginoauth.EventIdentityChanged && e.PreviousHandle != "":
				log.Printf("%s is now %s (was %s)", e.DID, e.Handle, e.PreviousHandle)
			case e.Type == ginoauth.EventSessionEnded && e.Reason == ginoauth.EndAccountMoved:
				log.Printf("%s moved to another server: it must log in again", e.DID)
			case e.Type == ginoauth.EventSessionEnded && (e.Reason == ginoauth.EndAccountTakenDown || e.Reason == ginoauth.EndAccountDeleted):
				log.Printf("%s is gone (%s): removing its data", e.DID, e.Reason)
			}
		},
	}
	_ = cfg
}

// Following the token life: revocations at the server noticed within
// about six minutes, refreshes and scope changes reported, and a browser
// whose login the server ended sent back through the login.
func ExampleEvent_tokenLife() {
	store := memstore.New()
	oc := oauth.NewPublicConfig("https://myapp.example/oauth-client-metadata.json",
		"https://myapp.example/oauth/callback", []string{"atproto", "transition:generic"})
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:        indigoclient.New(oc, store, indigoclient.Options{}),
		Storage:            store,
		CookieSecret:       "an-example-cookie-secret-of-32-bytes!!",
		BaseURL:            "https://myapp.example",
		LivenessCheckEvery: 5 * time.Minute, // the default
		ReturnToLogin:      true,            // a 303 to /login?handle=<did>&redirect=<page>
		OnEvent: func(e ginoauth.Event) {
			switch {
			case e.Type == ginoauth.EventScopesChanged:
				log.Printf("%s now grants %v (was %v)", e.DID, e.Scopes, e.PreviousScopes)
			case e.Type == ginoauth.EventSessionEnded && e.Reason == ginoauth.EndRevokedAtServer:
				log.Printf("%s revoked the app at their PDS", e.DID)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()
	fmt.Println("ready")
	// Output: ready
}
