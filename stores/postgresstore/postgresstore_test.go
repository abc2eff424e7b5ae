package postgresstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

const pgEnv = "GINOAUTH_TEST_POSTGRES_DSN"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dsn(t *testing.T) string {
	t.Helper()
	d := os.Getenv(pgEnv)
	if d == "" {
		t.Skip("Postgres tests skipped: set " + pgEnv + " (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable; see docker-compose.test.yml)")
	}
	return d
}

// newTable returns a unique table name and drops its tables when the test
// ends: other test packages share the database.
func newTable(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "pgs_" + hex.EncodeToString(b[:])
	d := dsn(t)
	t.Cleanup(func() {
		// Runs after the stores' own cleanups (LIFO), so with a pool of
		// its own.
		s, err := postgresstore.Open(d, postgresstore.Options{Table: table, SkipMigration: true})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		if err := s.DB().Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error; err != nil {
			t.Error(err)
		}
	})
	return table
}

func open(t *testing.T, table string) *gormstore.Store {
	t.Helper()
	s, err := postgresstore.Open(dsn(t), postgresstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSuite runs the storage contract, with Reopen opening a second pool
// on the same tables (as a second app instance would).
func TestSuite(t *testing.T) {
	dsn(t)
	var tables sync.Map // *gormstore.Store -> table
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			table := newTable(t)
			s := open(t, table)
			tables.Store(s, table)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			table, _ := tables.Load(s.(*gormstore.Store))
			return open(t, table.(string))
		},
		Break: func(t *testing.T, s storage.Store) { _ = s.(*gormstore.Store).Close() },
	})
}

func TestPoolSettings(t *testing.T) {
	s := open(t, newTable(t))
	sqlDB, _ := s.DB().DB()
	if n := sqlDB.Stats().MaxOpenConnections; n != postgresstore.MaxOpenConns {
		t.Errorf("MaxOpenConnections = %d, want %d", n, postgresstore.MaxOpenConns)
	}
}

// TestOpenFailure: a server that cannot be reached gives an error (without
// the password in it) and leaks no pool.
func TestOpenFailure(t *testing.T) {
	s, err := postgresstore.Open("postgres://user:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", postgresstore.Options{})
	if err == nil {
		_ = s.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

// TestNoSQLiteDriver: importing postgresstore (or gormstore) must not
// compile the cgo SQLite driver into the user's binary, and sqlitestore
// must not pull in pgx.
func TestNoSQLiteDriver(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to run go list with")
	}
	const mod = "github.com/gin-atproto/oauth-sessions/"
	deps := func(pkg string) string {
		out, err := exec.Command(goBin, "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return string(out)
	}
	for _, pkg := range []string{"stores/postgresstore", "stores/gormstore"} {
		d := deps(pkg)
		for _, bad := range []string{"github.com/mattn/go-sqlite3", "gorm.io/driver/sqlite"} {
			if strings.Contains(d, bad) {
				t.Errorf("%s depends on %s", pkg, bad)
			}
		}
	}
	d := deps("stores/sqlitestore")
	if strings.Contains(d, "github.com/jackc/pgx") {
		t.Error("stores/sqlitestore depends on pgx")
	}
	if !strings.Contains(d, "github.com/mattn/go-sqlite3") {
		t.Error("go list output does not look right: sqlitestore without go-sqlite3")
	}
}
