// Package testdb gives other packages' tests a storage.Store on each
// backend the module supports, cleaned up when the test ends:
//
//	for _, b := range testdb.All() {
//		t.Run(b.Name, func(t *testing.T) {
//			store := b.New(t) // skips the test if the backend is unavailable
//			...
//		})
//	}
//
// Postgres runs only when GINOAUTH_TEST_POSTGRES_DSN is set (see
// docker-compose.test.yml); each store gets tables of its own, dropped at
// cleanup, because test packages run in parallel against one database.
//
// Redis (Redis, RedisPair) runs only when GINOAUTH_TEST_REDIS_ADDR is set;
// each store gets a key prefix of its own, whose keys are deleted at
// cleanup. It is not part of All: call it where a test wants it.
package testdb

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// PostgresEnv names the environment variable holding the test database DSN,
// e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "GINOAUTH_TEST_POSTGRES_DSN"

// Backend is one kind of store.
type Backend struct {
	Name string                           // "memory", "sqlite" or "postgres"
	New  func(t testing.TB) storage.Store // a fresh, empty store
	// Pair returns two independent handles (connection pools) on one fresh,
	// empty store, as two app instances sharing a database have. For
	// memory, both are the same store: memory is not shared across
	// processes.
	Pair func(t testing.TB) (storage.Store, storage.Store)
}

// All returns the memory, SQLite and Postgres backends, in that order.
func All() []Backend {
	return []Backend{
		{"memory", Memory, func(t testing.TB) (storage.Store, storage.Store) { s := Memory(t); return s, s }},
		{"sqlite", SQLite, SQLitePair},
		{"postgres", Postgres, PostgresPair},
	}
}

// SQLitePair opens one new SQLite file twice.
func SQLitePair(t testing.TB) (storage.Store, storage.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shared.db")
	var out [2]storage.Store
	for i := range out {
		s, err := sqlitestore.Open(path, sqlitestore.Options{})
		if err != nil {
			t.Fatalf("testdb: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out[i] = s
	}
	return out[0], out[1]
}

// PostgresPair returns a fresh Postgres store and a second pool on its
// tables. It skips t when PostgresEnv is unset.
func PostgresPair(t testing.TB) (storage.Store, storage.Store) {
	t.Helper()
	table := randomTable()
	first := postgresTable(t, table)
	second, err := postgresstore.Open(PostgresDSN(t), postgresstore.Options{Table: table, SkipMigration: true})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { _ = second.Close() })
	return first, second
}

// Memory returns a new in-memory store.
func Memory(t testing.TB) storage.Store { return memstore.New() }

// SQLite returns a store on a new file in t.TempDir(), closed at cleanup.
func SQLite(t testing.TB) storage.Store {
	t.Helper()
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "store.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// PostgresDSN returns the test database DSN, or skips t when it is unset.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		t.Skip("Postgres tests skipped: set " + PostgresEnv + " (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable; see docker-compose.test.yml)")
	}
	return dsn
}

// Postgres returns a store on tables of its own in the test database,
// dropped and closed at cleanup. It skips t when PostgresEnv is unset.
func Postgres(t testing.TB) storage.Store {
	t.Helper()
	return postgresTable(t, randomTable())
}

func randomTable() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "testdb_" + hex.EncodeToString(b[:])
}

func postgresTable(t testing.TB, table string) storage.Store {
	t.Helper()
	dsn := PostgresDSN(t)
	s, err := postgresstore.Open(dsn, postgresstore.Options{Table: table})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() {
		drop := `DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`
		err := s.DB().Exec(drop).Error
		_ = s.Close()
		if err != nil {
			// The test may have closed the store (to simulate an outage):
			// drop through a pool of our own.
			d, oerr := postgresstore.Open(dsn, postgresstore.Options{Table: table, SkipMigration: true})
			if oerr != nil {
				t.Errorf("testdb: drop %s: %v", table, oerr)
				return
			}
			defer d.Close()
			if err := d.DB().Exec(drop).Error; err != nil {
				t.Errorf("testdb: drop %s: %v", table, err)
			}
		}
	})
	return s
}
