package ginoauth

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Listing and ending an account's sessions with 10 and 10,000 of them, on
// memory and SQLite (revocation is the no-op client's: the figures are the
// library's and the store's, not an authorization server's).
//
//	go test -run '^$' -bench 'Sessions' -benchmem ./ginoauth/
func BenchmarkSessionsOfAccount(b *testing.B) {
	for _, store := range []string{"memory", "sqlite"} {
		for _, n := range []int{10, 10_000} {
			b.Run(fmt.Sprintf("%s/list/%d", store, n), func(b *testing.B) {
				m, did := benchDevices(b, store, n)
				b.ResetTimer()
				for b.Loop() {
					list, err := m.SessionsOf(context.Background(), did, nil)
					if err != nil || len(list) != n {
						b.Fatal(err, len(list))
					}
				}
			})
			b.Run(fmt.Sprintf("%s/end-all/%d", store, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					m, did := benchDevices(b, store, n)
					b.StartTimer()
					if ended, err := m.EndAllSessions(context.Background(), did); err != nil || ended != n {
						b.Fatal(err, ended)
					}
				}
			})
		}
	}
}

// benchDevices is a Manager on a new store holding n sessions of one account.
func benchDevices(b *testing.B, kind string, n int) (*Manager, string) {
	b.Helper()
	var st storage.Store = memstore.New()
	if kind == "sqlite" {
		s, err := sqlitestore.Open(filepath.Join(b.TempDir(), "bench.db"), sqlitestore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		st = s
	}
	m, err := New(Config{OAuthClient: nopClient{}, Storage: st, CookieSecret: "0123456789abcdef0123456789abcdef", BaseURL: "https://app.example"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	const did = "did:plc:benchaccount"
	for i := range n {
		c, _ := testContext()
		if _, err := m.startSession(c, &oauthclient.Grant{DID: did, OAuthSessionID: fmt.Sprint("s", i)}, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	return m, did
}
