package ginoauth_test

import (
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

// testApp is a real Gin app on the library (see internal/apptest) whose
// OAuth client talks to a local authorization server + PDS that checks PAR,
// PKCE, DPoP, state and iss for real.
type testApp struct {
	*apptest.App
	as    *ginoauthtest.Server
	alice ginoauthtest.Account
	bob   ginoauthtest.Account
}

// newTestApp starts an authorization server with the accounts alice.test and
// bob.test, and an app using it.
func newTestApp(t testing.TB, storage storage.Store, configure ...func(*ginoauth.Config)) *testApp {
	t.Helper()
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test", DisplayName: "Alice"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	return startApp(t, as, func(o *apptest.Options) {
		o.Storage = storage
		o.Configure = func(c *ginoauth.Config) {
			for _, f := range configure {
				f(c)
			}
		}
	})
}

// startApp starts one more app (an instance) on the authorization server as.
func startApp(t testing.TB, as *ginoauthtest.Server, modify func(*apptest.Options)) *testApp {
	t.Helper()
	a := &testApp{as: as}
	a.alice, _ = as.Account("alice.test")
	a.bob, _ = as.Account("bob.test")
	opts := apptest.Options{
		HTTPClient: as.HTTPClient(),
		Directory:  as.Directory(),
		Consent:    as.Consent,
	}
	if modify != nil {
		modify(&opts)
	}
	a.App = apptest.New(t, opts)
	return a
}
