package gormstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
)

// These tests use real databases: SQLite files in t.TempDir() and, when
// GINOAUTH_TEST_POSTGRES_DSN is set, the Postgres server it names (each test
// on tables of its own, dropped afterwards).

const pgEnv = "GINOAUTH_TEST_POSTGRES_DSN"

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backendKind is one database the tests run against.
type backendKind struct {
	name string
	// open returns a new *gorm.DB on the database identified by where (a
	// file path or a DSN); where == "" makes a new database.
	open func(t testing.TB, where string) (*gorm.DB, string)
}

var backends = []backendKind{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

func sqliteDSN(path string) string {
	return path + "?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate"
}

func openSQLite(t testing.TB, path string) (*gorm.DB, string) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "store.db")
	}
	db, err := gorm.Open(sqlite.Open(sqliteDSN(path)), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db, path
}

func pgDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(pgEnv)
	if dsn == "" {
		t.Skip("Postgres tests skipped: set " + pgEnv + " (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable; see docker-compose.test.yml)")
	}
	return dsn
}

func openPostgres(t testing.TB, dsn string) (*gorm.DB, string) {
	t.Helper()
	if dsn == "" {
		dsn = pgDSN(t)
	}
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(4) // several test packages share the server
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db, dsn
}

// uniqueTable returns a fresh table name, and for Postgres drops the tables
// when the test ends (SQLite files go with TempDir).
func uniqueTable(t testing.TB, kind backendKind, where string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "gs_" + hex.EncodeToString(b[:])
	if kind.name == DialectPostgres {
		t.Cleanup(func() { dropTables(t, where, table) })
	}
	return table
}

func dropTables(t testing.TB, dsn, table string) {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Errorf("drop %s: %v", table, err)
		return
	}
	defer func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() }()
	if err := db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error; err != nil {
		t.Errorf("drop %s: %v", table, err)
	}
}

// fixture is one store with what is needed to open more handles on it.
type fixture struct {
	kind  backendKind
	where string
	db    *gorm.DB
	opts  Options
	store *Store
}

// newFixture opens a database, makes a store with opts (Table filled in)
// and closes it at cleanup.
func newFixture(t testing.TB, kind backendKind, opts Options) *fixture {
	t.Helper()
	db, where := kind.open(t, "")
	if opts.Table == "" {
		opts.Table = uniqueTable(t, kind, where)
	}
	s, err := New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &fixture{kind: kind, where: where, db: db, opts: opts, store: s}
}

// reopen returns a store on the same tables through a new connection pool,
// as another app instance would have.
func (f *fixture) reopen(t testing.TB) *Store {
	t.Helper()
	db, _ := f.kind.open(t, f.where)
	o := f.opts
	o.SkipMigration = true
	o.CleanupInterval = 0
	s, err := New(db, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// harness runs the storagetest suite on kind, through New on a *gorm.DB.
func harness(kind backendKind) storagetest.Harness {
	var fixtures sync.Map // *Store -> *fixture
	return storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			f := newFixture(t, kind, Options{})
			fixtures.Store(f.store, f)
			return f.store
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			f, _ := fixtures.Load(s.(*Store))
			return f.(*fixture).reopen(t)
		},
		Break: func(t *testing.T, s storage.Store) {
			sqlDB, err := s.(*Store).DB().DB()
			if err != nil {
				t.Fatal(err)
			}
			_ = sqlDB.Close()
		},
	}
}

// clock is a settable Options.Now.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func count(t testing.TB, s *Store, table string) int64 {
	t.Helper()
	var n int64
	if err := s.DB().WithContext(context.Background()).Raw(`SELECT COUNT(*) FROM "` + table + `"`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func forEachBackend(t *testing.T, fn func(t *testing.T, kind backendKind)) {
	for _, kind := range backends {
		t.Run(kind.name, func(t *testing.T) { fn(t, kind) })
	}
}
