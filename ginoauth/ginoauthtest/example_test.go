package ginoauthtest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

// A complete login with indigo's OAuth client against the test server,
// followed by an authenticated PDS call, a token refresh and a logout. In a
// test, use ginoauthtest.New(t, ginoauthtest.Options{}) instead of NewServer, and it is closed for
// you.
func Example() {
	ctx := context.Background()
	srv := ginoauthtest.NewServer(ginoauthtest.Options{})
	defer srv.Close()
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test", DisplayName: "Alice"})

	// indigo's client, pointed at the server: its HTTP client reaches
	// https://pds.test (and nothing else), its directory knows alice.
	cfg := oauth.NewLocalhostConfig("http://127.0.0.1/callback", []string{"atproto", "transition:generic"})
	store := oauth.NewMemStore()
	app := oauth.NewClientApp(&cfg, store)
	app.Client = srv.HTTPClient()
	app.Resolver.Client = srv.HTTPClient()
	app.Dir = srv.Directory()

	// 1. The app starts the flow: PAR with PKCE and DPoP.
	authURL, err := app.StartAuthFlow(ctx, "alice.test")
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.SplitN(authURL, "?", 2)[0])

	// 2. The user approves on the consent page.
	redirect, err := srv.Consent(ctx, authURL, "alice.test", true)
	if err != nil {
		panic(err)
	}
	cb, _ := url.Parse(redirect)
	fmt.Println(cb.Scheme+"://"+cb.Host+cb.Path, "iss="+cb.Query().Get("iss"))

	// 3. The app's callback exchanges the code.
	sd, err := app.ProcessCallback(ctx, cb.Query())
	if err != nil {
		panic(err)
	}
	fmt.Println(sd.AccountDID == alice.DID, sd.HostURL)

	// 4. Authenticated PDS calls, with DPoP-bound tokens.
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	var me struct{ Handle string }
	if err := sess.APIClient().Get(ctx, "com.atproto.server.getSession", nil, &me); err != nil {
		panic(err)
	}
	fmt.Println("logged in as", me.Handle)

	// 5. Expired access token: the client refreshes and retries by itself.
	srv.ExpireAccessTokens()
	if err := sess.APIClient().Get(ctx, "com.atproto.server.getSession", nil, &me); err != nil {
		panic(err)
	}
	fmt.Println("refresh grants:", srv.Stats().RefreshGrants)

	// 6. Logout revokes the session at the server.
	if err := app.Logout(ctx, sd.AccountDID, sd.SessionID); err != nil {
		panic(err)
	}
	st := srv.Stats()
	fmt.Println("sessions revoked:", st.SessionsRevoked, "active:", st.ActiveSessions)

	// Output:
	// https://pds.test/oauth/authorize
	// http://127.0.0.1/callback iss=https://pds.test
	// true https://pds.test
	// logged in as alice.test
	// refresh grants: 1
	// sessions revoked: 1 active: 0
}

// Running the server as the offline authorization server of a demo app: the
// app's OAuth client uses HTTPClient and Directory as in a test, and the
// browser is sent to the rewritten authorization URL, where a person clicks
// Approve on the consent page.
func ExampleServer_RewriteForBrowser() {
	srv := ginoauthtest.NewServer(ginoauthtest.Options{}) // or Options{Addr: "127.0.0.1:2583"}, or StartListener
	defer srv.Close()
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})

	// What indigo's StartAuthFlow returns (the client only knows https://pds.test):
	authURL := "https://pds.test/oauth/authorize?client_id=...&request_uri=..."

	// What the app redirects the browser to:
	browserURL := srv.RewriteForBrowser(authURL)
	fmt.Println(strings.HasPrefix(browserURL, srv.URL()+"/oauth/authorize?"))
	fmt.Println(strings.HasPrefix(srv.URL(), "http://127.0.0.1:"))
	// Output:
	// true
	// true
}
