// Package sqlitestore opens a storage.Store on a SQLite file in one line:
//
//	store, err := sqlitestore.Open("sessions.db", sqlitestore.Options{CleanupInterval: 10 * time.Minute})
//	defer store.Close()
//
// The store is a *gormstore.Store (Store, Taker, Locker, Indexer and Counter); see gormstore
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
// Writes go through a single connection. SQLite allows one writer at a
// time, and with several writing connections in one process concurrent
// writers queue inside SQLite's busy handler, which sleeps in steps of up
// to 100ms; one connection instead queues them in database/sql, in order
// and without sleeping. Reads (every session check is one) go through a
// separate pool of query-only connections (eight), which WAL
// runs in parallel with each other and with the writer; a read started
// after a write committed sees it. Several processes may still open the
// same file: busy_timeout arbitrates between them. To tune the pools,
// open your own gorm DB and read pool with DSN and pass them to
// gormstore.New (Options.Reader).
package sqlitestore

import (
	"database/sql"
	"errors"
	"net/url"
	"strings"

	"gorm.io/driver/sqlite"

	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// readConns is the size of the read pool Open creates beside the single
// writing connection.
const readConns = 8

// Options are gormstore's; CloseDB and Reader are always set by Open.
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
	// One writer and a read pool: see the package doc.
	reader, err := sql.Open("sqlite3", DSN(path)+"&_query_only=true")
	if err != nil {
		return nil, err
	}
	reader.SetMaxOpenConns(readConns)
	reader.SetMaxIdleConns(readConns)
	opts.Reader = reader
	st, err := gormstore.Open(sqlite.Open(DSN(path)), gormstore.Pool{MaxOpenConns: 1, MaxIdleConns: 1}, opts)
	if err != nil {
		_ = reader.Close()
		return nil, err
	}
	return st, nil
}
