package ginoauth_test

import (
	"context"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
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

func newTestApp(t *testing.T, storage ginoauth.Storage, configure ...func(*ginoauth.Config)) *testApp {
	t.Helper()
	as := ginoauthtest.New(t)
	a := &testApp{
		as:    as,
		alice: as.CreateAccount("alice.test", ginoauthtest.WithDisplayName("Alice")),
		bob:   as.CreateAccount("bob.test"),
	}
	a.App = apptest.New(t, apptest.Options{
		Storage:    storage,
		HTTPClient: as.HTTPClient(),
		Directory:  as.Directory(),
		Consent: func(ctx context.Context, authURL, handle string) (string, error) {
			return as.Consent(ctx, authURL, handle, true)
		},
		Configure: func(c *ginoauth.Config) {
			for _, f := range configure {
				f(c)
			}
		},
	})
	return a
}
