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
// or 5 idle minutes. Tune it with store.DB().DB(). Before a pooled
// connection is used again it is checked, without a round trip, for a
// server that closed it meanwhile (a restart, a crash, a failover), and
// replaced if so: the first request after the database comes back
// succeeds. Dialector gives the same to a *gorm.DB of your own.
//
// Session checks can be read from a streaming replica (Options.Replica,
// ReplicaPool; see gormstore.Store.GetStale).
package postgresstore

import (
	"database/sql"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// Options are gormstore's; CloseDB is always set by Open.
type Options = gormstore.Options

// Replica is gormstore's: a streaming replica for the session checks.
type Replica = gormstore.Replica

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
//
// With opts.Replica, Close also closes Replica.DB; if Open fails, the
// caller still owns it.
func Open(dsn string, opts Options) (*gormstore.Store, error) {
	return gormstore.Open(Dialector(dsn), gormstore.Pool{
		MaxOpenConns: MaxOpenConns, MaxIdleConns: MaxIdleConns,
		ConnMaxLifetime: ConnMaxLifetime, ConnMaxIdleTime: ConnMaxIdleTime,
	}, opts)
}

// Dialector is gorm's Postgres dialector for dsn (pgx), with the check of
// pooled connections that Open uses: one that the server closed while it
// was idle is replaced before a statement is sent on it. Use it to open a
// *gorm.DB of your own for gormstore.New.
func Dialector(dsn string) gorm.Dialector {
	return postgres.New(postgres.Config{
		DSN:          dsn,
		OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionResetSession(checkIdle)},
	})
}

// ReplicaPool opens a connection pool on the streaming replica at dsn for
// Options.Replica.DB, with Open's pool limits and connection check. It
// connects lazily: a replica that is down costs nothing but fallbacks to
// the primary.
func ReplicaPool(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionResetSession(checkIdle))
	db.SetMaxOpenConns(MaxOpenConns)
	db.SetMaxIdleConns(MaxIdleConns)
	db.SetConnMaxLifetime(ConnMaxLifetime)
	db.SetConnMaxIdleTime(ConnMaxIdleTime)
	return db, nil
}
