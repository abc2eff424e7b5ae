package interop_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// newApp starts the test app with its OAuth client pointed at the reference
// PDS; the user's sign-in and consent go through the PDS's own login API.
func newApp(t *testing.T, env *refpds.Env, storage storage.Store, modify ...func(*apptest.Options)) *apptest.App {
	t.Helper()
	opts := apptest.Options{
		Storage:    storage,
		HTTPClient: env.HTTPClient(),
		Directory:  env.Directory(),
		Consent: func(ctx context.Context, authURL, handle string, approve bool) (string, error) {
			if !approve {
				return "", errors.New("interop: only approval is driven at the reference PDS")
			}
			acct, err := env.Account(handle)
			if err != nil {
				return "", err
			}
			return env.SignInAndConsent(ctx, authURL, handle, acct.Password)
		},
	}
	for _, m := range modify {
		m(&opts)
	}
	return apptest.New(t, opts)
}

// storages are the backends the interop flows run on (Postgres only when
// its DSN is set).
func storages() []testdb.Backend { return testdb.All() }
