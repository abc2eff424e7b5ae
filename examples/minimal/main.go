// Command minimal is the README's Quick start, runnable offline: a Gin app
// with AT Protocol login, on SQLite, against a built-in local authorization
// server + PDS with the account alice.test (swap in oauth.NewPublicConfig
// and drop the local server to log in with real accounts).
//
//	go run ./examples/minimal   # then open http://127.0.0.1:8080
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

const base = "http://127.0.0.1:8080"

func main() {
	gin.SetMode(gin.ReleaseMode)
	pds := ginoauthtest.NewServer(ginoauthtest.Options{}) // the local AT Protocol server
	defer pds.Close()
	pds.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	store, err := sqlitestore.Open("minimal.db", sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	r, mgr, closeApp, err := newApp(pds, store, base, rand.Text()+rand.Text()) // use a fixed COOKIE_SECRET in production
	if err != nil {
		log.Fatal(err)
	}
	defer closeApp()
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	go func() { // once listening: what an authorization server and a browser will find
		if err := mgr.SelfCheck(context.Background(), nil).Err(); err != nil {
			log.Print(err)
		}
	}()
	fmt.Println("Open", base, "and log in as alice.test")
	log.Fatal(http.Serve(ln, r)) //nolint:gosec // a local demo
}

// newApp is the app: the library's routes, a start page, a private page.
func newApp(pds *ginoauthtest.Server, store storage.Store, baseURL, secret string) (*gin.Engine, *ginoauth.Manager, func(), error) {
	client := indigoclient.New(indigoclient.LocalhostConfig(baseURL+"/oauth/callback", []string{"atproto"}), store,
		indigoclient.Options{HTTPClient: pds.HTTPClient(), Directory: pds.Directory(), BrowserURL: pds.RewriteForBrowser})
	mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: secret, BaseURL: baseURL,
		LocalDomains: []string{"test"}, // the local server's pds.test and alice.test; drop it with the local server
		ErrorHandler: func(c *gin.Context, e ginoauth.ErrorResponse) {
			page(c, e.Status, e.Message+`. <a href="/">Start again</a>`)
		}})
	if err != nil {
		return nil, nil, nil, err
	}
	r := gin.New()
	// No proxy in front: c.ClientIP(), which the login rate limits count
	// by, is the connection's address. Behind one, name its addresses.
	_ = r.SetTrustedProxies(nil)
	r.Use(gin.Recovery(), ginoauth.Middleware(mgr))
	mgr.Mount(r) // POST /login, /oauth/callback, POST /api/logout, ...
	r.GET("/", func(c *gin.Context) {
		if u, ok := ginoauth.CurrentUser(c); ok {
			page(c, 200, `Hello @`+u.Handle+`. <a href="/private">Private page</a>
<form method="post" action="/api/logout"><button>Log out</button></form>`)
			return
		}
		page(c, 200, `<form method="post" action="/login"><input name="handle" value="alice.test"><button>Log in</button></form>`)
	})
	r.GET("/private", ginoauth.RequireAuth(mgr), func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		page(c, 200, "Only for you, "+u.DID+`. <a href="/">Back</a>`)
	})
	return r, mgr, func() { _ = mgr.Close(); _ = client.Close() }, nil
}

func page(c *gin.Context, status int, body string) {
	c.Data(status, "text/html; charset=utf-8", []byte("<!doctype html><title>minimal</title><p>"+body))
}
