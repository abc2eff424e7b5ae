package testdb

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// Shared returns a fresh store of backend ("sqlite", "postgres" or
// "redis") and a spec that OpenSpec turns into another handle on it, in
// another process: for tests that run a second app instance as a real
// process (to kill it). The store is dropped at t's cleanup. It skips t
// when the backend is not configured.
func Shared(t testing.TB, backend string) (storage.Store, string) {
	t.Helper()
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "shared.db")
		return OpenSpec(t, "sqlite|"+path), "sqlite|" + path
	case "postgres":
		table := randomTable()
		return postgresTable(t, table), "postgres|" + table
	case "redis":
		prefix := RedisPrefix(t)
		return redisOn(t, prefix), "redis|" + prefix
	}
	t.Fatalf("testdb: no shared backend %q", backend)
	return nil, ""
}

// OpenSpec opens a handle on the store a Shared spec names, closed at t's
// cleanup (its data stays: Shared's owner drops it).
func OpenSpec(t testing.TB, spec string) storage.Store {
	t.Helper()
	backend, arg, _ := strings.Cut(spec, "|")
	switch backend {
	case "sqlite":
		s, err := sqlitestore.Open(arg, sqlitestore.Options{})
		if err != nil {
			t.Fatalf("testdb: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	case "postgres":
		s, err := postgresstore.Open(PostgresDSN(t), postgresstore.Options{Table: arg, SkipMigration: true})
		if err != nil {
			t.Fatalf("testdb: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	case "redis":
		return redisOn(t, arg)
	}
	t.Fatalf("testdb: bad spec %q", spec)
	return nil
}
