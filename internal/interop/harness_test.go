package interop_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// newApp starts the test app with its OAuth client pointed at the reference
// PDS; the user's sign-in and consent go through the PDS's own login API.
func newApp(t *testing.T, env *refpds.Env, storage ginoauth.Storage) *apptest.App {
	t.Helper()
	return apptest.New(t, apptest.Options{
		Storage:    storage,
		HTTPClient: env.HTTPClient(),
		Directory:  env.Directory(),
		Consent: func(ctx context.Context, authURL, handle string) (string, error) {
			acct, err := env.Account(handle)
			if err != nil {
				return "", err
			}
			return env.SignInAndConsent(ctx, authURL, handle, acct.Password)
		},
	})
}

type storageCase struct {
	name string
	open func(t *testing.T) ginoauth.Storage
}

func storages() []storageCase {
	return []storageCase{
		{"memory", func(*testing.T) ginoauth.Storage { return memstore.New() }},
		{"sqlite", func(t *testing.T) ginoauth.Storage {
			s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "interop.db"), sqlitestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}
