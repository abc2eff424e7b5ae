package testdb

import (
	"path/filepath"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// Handles returns n independent handles (connection pools, clients) on one
// fresh, empty store of the named backend ("memory", "sqlite", "postgres"
// or "redis"), as n app instances sharing a database have; Pair is
// Handles with n = 2. For memory, every handle is the same store. It skips
// t when the backend's server is not configured.
func Handles(t testing.TB, backend string, n int) []storage.Store {
	t.Helper()
	out := make([]storage.Store, n)
	switch backend {
	case "memory":
		s := Memory(t)
		for i := range out {
			out[i] = s
		}
	case "sqlite":
		path := filepath.Join(t.TempDir(), "shared.db")
		for i := range out {
			s, err := sqlitestore.Open(path, sqlitestore.Options{})
			if err != nil {
				t.Fatalf("testdb: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			out[i] = s
		}
	case "postgres":
		table := randomTable()
		out[0] = postgresTable(t, table)
		for i := 1; i < n; i++ {
			s, err := postgresstore.Open(PostgresDSN(t), postgresstore.Options{Table: table, SkipMigration: true})
			if err != nil {
				t.Fatalf("testdb: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			out[i] = s
		}
	case "redis":
		prefix := RedisPrefix(t)
		for i := range out {
			out[i] = redisOn(t, prefix)
		}
	default:
		t.Fatalf("testdb: no backend %q", backend)
	}
	return out
}
