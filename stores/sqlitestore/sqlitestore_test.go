package sqlitestore_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, path string) *gormstore.Store {
	t.Helper()
	s, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSuite runs the storage contract on a file, with Reopen opening the
// same file through a second pool (as a second process would).
func TestSuite(t *testing.T) {
	var paths sync.Map // *gormstore.Store -> file path
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			path := filepath.Join(t.TempDir(), "s.db")
			s := open(t, path)
			paths.Store(s, path)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			path, _ := paths.Load(s.(*gormstore.Store))
			return open(t, path.(string))
		},
		Break: func(t *testing.T, s storage.Store) { _ = s.(*gormstore.Store).Close() },
	})
}

// TestConnectionSettings checks the pragmas and the pool Open promises.
func TestConnectionSettings(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"))
	db := s.DB()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"busy_timeout": "5000",
		"synchronous":  "1", // NORMAL
	} {
		var got string
		if err := db.Raw("PRAGMA " + pragma).Row().Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	sqlDB, _ := db.DB()
	if n := sqlDB.Stats().MaxOpenConnections; n != 1 {
		t.Errorf("MaxOpenConnections = %d, want 1", n)
	}
	if !strings.Contains(sqlitestore.DSN("x.db"), "_txlock=immediate") {
		t.Errorf("DSN %q lacks _txlock=immediate", sqlitestore.DSN("x.db"))
	}
}

func TestOpenErrors(t *testing.T) {
	for _, path := range []string{"", "a.db?mode=ro", filepath.Join(t.TempDir(), "no", "such", "dir", "s.db")} {
		if s, err := sqlitestore.Open(path, sqlitestore.Options{}); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
	if s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{Table: "bad-name"}); err == nil {
		_ = s.Close()
		t.Error("Open with a bad table name succeeded")
	}
}

// TestCloseClosesDB: the store owns the pool Open made.
func TestCloseClosesDB(t *testing.T) {
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := s.DB().DB()
	if sqlDB.Ping() == nil {
		t.Error("pool still open after Close")
	}
	if _, err := s.Get(context.Background(), "k"); err == nil {
		t.Error("Get after Close succeeded")
	}
}

// TestPersists: data survives closing and reopening the file.
func TestPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	if v, err := s2.Get(ctx, "k"); err != nil || string(v) != "kept" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
}

// TestReadsDoNotWaitForTheWriter: a session check must not queue behind a
// write. While a transaction holds the single writing connection, Get
// still answers from the read pool, and sees what was committed before.
func TestReadsDoNotWaitForTheWriter(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	tx := s.DB().Begin() // takes the writer connection and SQLite's write lock
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	defer tx.Rollback()
	if err := tx.Exec(`UPDATE ginoauth_kv SET "value" = ? WHERE "key" = ?`, []byte("uncommitted"), "k").Error; err != nil {
		t.Fatal(err)
	}
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := s.Get(readCtx, "k")
	if err != nil {
		t.Fatalf("Get while the writer is busy: %v", err)
	}
	if string(v) != "v1" {
		t.Fatalf("Get = %q, want the committed v1", v)
	}
}
