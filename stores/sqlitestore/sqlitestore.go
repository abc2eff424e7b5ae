// Package sqlitestore opens a storage.Store on a SQLite file in one line:
//
//	store, err := sqlitestore.Open("sessions.db", sqlitestore.Options{CleanupInterval: 10 * time.Minute})
//	defer store.Close()
//
// The store is a *gormstore.Store (Store, Taker, Locker and Indexer); see gormstore
// for its behaviour. This is the only package of the module that imports
// the cgo SQLite driver (gorm.io/driver/sqlite, mattn/go-sqlite3), so
// building it needs a C compiler and CGO_ENABLED=1.
//
// # Connection settings
//
// The file is opened for concurrent web use (see DSN):
//
//   - journal_mode=WAL: readers never block the writer, nor it them.
//   - synchronous=NORMAL: safe with WAL (a power loss can lose the last
//     transactions but never corrupts the file), and much faster than FULL.
//   - busy_timeout=5000: a connection waits up to 5s for another process's
//     write lock instead of failing at once with "database is locked".
//   - _txlock=immediate: explicit transactions take the write lock at BEGIN,
//     so two transactions that read and then write cannot deadlock on the
//     lock upgrade (relevant if you share the file with your own gorm code).
//
// The pool has a single connection. SQLite allows one writer at a time, and
// with several connections in one process concurrent writers queue inside
// SQLite's busy handler, which sleeps in steps of up to 100ms; one
// connection instead queues them in database/sql, in order and without
// sleeping. Every statement the store runs is a short primary-key lookup or
// write, so one connection serves tens of thousands of operations per
// second (see the benchmarks). Several processes may still open the same
// file: busy_timeout arbitrates between them. To use more connections
// (parallel reads), call store.DB().DB() and SetMaxOpenConns, or open your
// own gorm DB with DSN and pass it to gormstore.New.
package sqlitestore

import (
	"errors"
	"net/url"
	"strings"

	"gorm.io/driver/sqlite"

	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// Options are gormstore's; CloseDB is always set by Open.
type Options = gormstore.Options

// DSN returns the go-sqlite3 data source name Open uses for the file at
// path: WAL journal, synchronous=NORMAL, a 5s busy timeout and immediate
// transactions.
func DSN(path string) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode()
}

// Open opens (creating if needed) the SQLite database file at path and
// returns a store on it that owns the connection: Close closes it.
func Open(path string, opts Options) (*gormstore.Store, error) {
	if path == "" {
		return nil, errors.New("sqlitestore: empty path")
	}
	if strings.ContainsRune(path, '?') {
		// go-sqlite3 would take what follows as connection parameters.
		return nil, errors.New("sqlitestore: path must not contain '?'")
	}
	// One connection: see the package doc.
	return gormstore.Open(sqlite.Open(DSN(path)), gormstore.Pool{MaxOpenConns: 1, MaxIdleConns: 1}, opts)
}
