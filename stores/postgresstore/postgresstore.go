// Package postgresstore opens a storage.Store on Postgres in one line:
//
//	store, err := postgresstore.Open(os.Getenv("DATABASE_URL"), postgresstore.Options{CleanupInterval: 10 * time.Minute})
//	defer store.Close()
//
// The store is a *gormstore.Store (Store, Taker, Locker, Indexer and Counter) over
// gorm.io/driver/postgres (pgx); see gormstore for its behaviour. Importing
// this package does not compile the cgo SQLite driver.
//
// Several app instances may share one database: Take is exactly-once and
// Lock is mutually exclusive across all of them, and schema creation at
// Open is serialised with an advisory lock.
//
// The pool opens at most 10 connections and keeps up to 10 idle, recycling
// each after 30 minutes (so failovers and server-side limits are picked up)
// or 5 idle minutes. Tune it with store.DB().DB().
package postgresstore

import (
	"time"

	"gorm.io/driver/postgres"

	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// Options are gormstore's; CloseDB is always set by Open.
type Options = gormstore.Options

// Pool settings Open applies.
const (
	MaxOpenConns    = 10
	MaxIdleConns    = 10
	ConnMaxLifetime = 30 * time.Minute
	ConnMaxIdleTime = 5 * time.Minute
)

// Open connects to the Postgres database at dsn (a URL such as
// "postgres://user:pass@host:5432/db?sslmode=require" or a key=value
// string) and returns a store that owns the connection pool: Close closes
// it.
func Open(dsn string, opts Options) (*gormstore.Store, error) {
	return gormstore.Open(postgres.Open(dsn), gormstore.Pool{
		MaxOpenConns: MaxOpenConns, MaxIdleConns: MaxIdleConns,
		ConnMaxLifetime: ConnMaxLifetime, ConnMaxIdleTime: ConnMaxIdleTime,
	}, opts)
}
