package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// Options configure a Store. The zero value is valid.
type Options struct {
	// Table is the key-value table. Default DefaultTable ("ginoauth_kv").
	// Plain identifiers only (letters, digits, underscore), at most 48
	// bytes; to use another Postgres schema, set search_path in the DSN.
	Table string
	// LockTable is the lock lease table. Default Table + "_locks".
	LockTable string
	// SetTable holds the members of the storage.Indexer sets, one row per
	// member. Default Table + "_sets". At most 55 bytes.
	SetTable string
	// SkipMigration stops New from creating the tables, for apps that run
	// their own migrations (see DDL).
	SkipMigration bool
	// CleanupInterval is how often a background goroutine removes expired
	// entries, expired set members and lapsed locks. 0 (the default)
	// starts no goroutine; expired entries and members are invisible
	// anyway, cleanup only reclaims space.
	CleanupInterval time.Duration
	// CleanupBatchSize is the most rows one cleanup statement deletes.
	// Default DefaultCleanupBatchSize (1000).
	CleanupBatchSize int
	// Logger receives cleanup failures. Default: discard (silent, like the
	// rest of the library); set it to see them.
	Logger *slog.Logger
	// CloseDB makes Close also close the *gorm.DB's connection pool (and
	// Reader and Replica.DB). The one-line constructors in sqlitestore and postgresstore
	// set it because they opened the pool; leave it false for a DB your
	// app owns.
	CloseDB bool
	// Reader, if set, is a second connection pool on the same database for
	// the reads (Get, Members); writes, locks and cleanup stay on the
	// *gorm.DB. sqlitestore uses it for several read-only connections
	// beside its single writer, which WAL lets run in parallel. It must see
	// every committed write at once: never an asynchronously replicated
	// replica (a lagging copy of a rotated refresh token is a replay that
	// ends the session). For a replica use Replica. Default: the *gorm.DB's
	// own pool.
	Reader *sql.DB
	// Replica, if set, is an asynchronous streaming replica of a Postgres
	// primary for GetStale (storage.StaleReader), the library's session
	// check, and for nothing else: Get, Members, Take, locks and writes
	// stay on the primary. See Store.GetStale. Postgres only.
	Replica *Replica
	// Now is the clock used for TTLs and lock leases. Default time.Now.
	// Tests may set it to move time.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.LockTable == "" {
		o.LockTable = o.Table + DefaultLockTableSuffix
	}
	if o.SetTable == "" {
		o.SetTable = o.Table + DefaultSetTableSuffix
	}
	if err := checkIdent("table", o.Table, maxTableName); err != nil {
		return o, err
	}
	if err := checkIdent("lock table", o.LockTable, maxLockTableName); err != nil {
		return o, err
	}
	if err := checkIdent("set table", o.SetTable, maxSetTableName); err != nil {
		return o, err
	}
	if o.LockTable == o.Table {
		return o, errors.New("gormstore: LockTable must differ from Table")
	}
	if o.SetTable == o.Table || o.SetTable == o.LockTable {
		return o, errors.New("gormstore: SetTable must differ from Table and LockTable")
	}
	if o.CleanupInterval < 0 {
		return o, fmt.Errorf("gormstore: negative CleanupInterval %v", o.CleanupInterval)
	}
	if o.CleanupBatchSize < 0 {
		return o, fmt.Errorf("gormstore: negative CleanupBatchSize %d", o.CleanupBatchSize)
	}
	if o.CleanupBatchSize == 0 {
		o.CleanupBatchSize = DefaultCleanupBatchSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r, err := o.Replica.withDefaults()
	if err != nil {
		return o, err
	}
	o.Replica = r
	return o, nil
}

// Store is a storage.Store, storage.Taker, storage.Locker,
// storage.Indexer and storage.StaleReader on a SQL database through gorm. It is safe for concurrent use. Create it with New
// (or sqlitestore.Open / postgresstore.Open) and Close it when done.
type Store struct {
	db   *gorm.DB
	d    dialect
	q    queries
	opts Options

	// reads runs Get and Members as prepared statements (nil: through
	// GORM); getQ and membersQ are their SQL in the driver's placeholders.
	reads          *readPath
	getQ, membersQ string

	// replica serves GetStale; nil without Options.Replica.
	replica *replica

	// released wakes this process's waiting Lock calls when it releases
	// a lock.
	released lease.ReleaseSignal

	// ctx is cancelled by Close; it bounds the cleanup goroutine's queries
	// so Close does not wait for a long pass to finish.
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when the cleanup goroutine exits; nil if none was started
	closeOnce sync.Once
	closeErr  error
}

var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Taker           = (*Store)(nil)
	_ storage.Locker          = (*Store)(nil)
	_ storage.RenewableLocker = (*Store)(nil)
	_ storage.Indexer         = (*Store)(nil)
)

// New returns a Store on db, whose dialect must be SQLite or Postgres. It
// creates the tables unless opts.SkipMigration is set and starts the cleanup
// goroutine when opts.CleanupInterval > 0. If New fails it does not close db.
func New(db *gorm.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("gormstore: nil *gorm.DB")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	d, err := lookupDialect(db.Name())
	if err != nil {
		return nil, err
	}
	if o.Replica != nil && d.name != DialectPostgres {
		return nil, fmt.Errorf("gormstore: Options.Replica needs Postgres, not %s", d.name)
	}
	lg := logger.Discard
	if db.Logger != nil {
		lg = db.Logger
	}
	s := &Store{
		// NewDB drops any conditions the caller's *gorm.DB carries; the
		// logger wrapper keeps keys and values out of gorm's SQL logs.
		db:   db.Session(&gorm.Session{NewDB: true, Logger: hideParams{lg}}),
		d:    d,
		q:    buildQueries(d, o.Table, o.LockTable, o.SetTable),
		opts: o,
	}
	s.reads = newReadPath(o.Reader, db.ConnPool, d.name == DialectSQLite)
	s.getQ, s.membersQ = s.q.get, s.q.members
	if d.name == DialectPostgres {
		s.getQ, s.membersQ = numbered(s.getQ), numbered(s.membersQ)
	}
	if !o.SkipMigration {
		if err := s.migrate(); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if o.CleanupInterval > 0 {
		s.done = make(chan struct{})
		go s.cleanupLoop(o.CleanupInterval)
	}
	if o.Replica != nil {
		s.replica = newReplica(o.Replica)
		go s.sampleLoop()
	}
	return s, nil
}

func (s *Store) migrate() error {
	stmts := s.d.ddl(s.opts.Table, s.opts.LockTable, s.opts.SetTable)
	err := s.db.Transaction(func(tx *gorm.DB) error {
		if s.d.name == DialectPostgres {
			// Postgres's CREATE ... IF NOT EXISTS is not safe against a
			// concurrent identical CREATE (it can fail on a catalog unique
			// index), which is what several app instances starting together
			// do. Serialise them; the lock ends with the transaction.
			h := fnv.New32a()
			_, _ = h.Write([]byte("ginoauth/gormstore migrate " + s.opts.Table))
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", int64(h.Sum32())).Error; err != nil {
				return err
			}
		}
		for _, st := range stmts {
			if err := tx.Exec(st).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gormstore: create schema for table %q: %w", s.opts.Table, err)
	}
	return nil
}

// DB returns the *gorm.DB the store uses (a session of the one given to New,
// with keys and values hidden from gorm's logger). Use it to tune the
// connection pool of a store opened by sqlitestore or postgresstore.
func (s *Store) DB() *gorm.DB { return s.db }

func storageErr(op string, err error) error {
	return &storage.Error{Op: op, Err: err}
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storageErr("get", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound // Set never stores an invalid key
	}
	var v []byte
	err := s.idempotent(ctx, func() error {
		rows, err := s.read(ctx, s.q.get, s.getQ, key, s.d.ts(s.opts.Now()))
		if err != nil {
			return storageErr("get", err)
		}
		v, err = scanValue("get", rows)
		return err
	})
	return v, err
}

// read runs the read query q (prepared is the same in the driver's
// placeholders) on the read path, or through GORM without one.
func (s *Store) read(ctx context.Context, q, prepared string, args ...any) (*sql.Rows, error) {
	if s.reads == nil {
		return s.db.WithContext(ctx).Raw(q, args...).Rows()
	}
	return s.reads.query(ctx, prepared, args...)
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return storageErr("set", err)
	}
	if err := storage.ValidateKey(key); err != nil {
		return storageErr("set", err)
	}
	if ttl < 0 {
		return storageErr("set", fmt.Errorf("gormstore: negative ttl %v", ttl))
	}
	now := s.opts.Now()
	var expires any // nil: never expires
	if ttl > 0 {
		expires = s.d.ts(now.Add(ttl))
	}
	if value == nil {
		value = []byte{} // drivers bind a nil slice as NULL; the column is NOT NULL
	}
	ts := s.d.ts(now)
	return s.idempotent(ctx, func() error {
		if err := s.db.WithContext(ctx).Exec(s.q.set, key, value, expires, ts, ts).Error; err != nil {
			return storageErr("set", err)
		}
		return nil
	})
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return storageErr("delete", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil // cannot exist
	}
	return s.idempotent(ctx, func() error {
		if err := s.db.WithContext(ctx).Exec(s.q.del, key).Error; err != nil {
			return storageErr("delete", err)
		}
		return nil
	})
}

// Take implements storage.Taker with one DELETE ... RETURNING statement.
// An expired entry is not returned (and is left for cleanup).
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storageErr("take", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	rows, err := s.db.WithContext(ctx).Raw(s.q.take, key, s.d.ts(s.opts.Now())).Rows()
	if err != nil {
		return nil, storageErr("take", err)
	}
	return scanValue("take", rows)
}

// scanValue reads the single "value" column of at most one row. It drains
// and closes rows before answering because for a DELETE ... RETURNING the
// statement only commits when it completes; a failure there must be
// reported, not hidden behind a value the database did not delete.
func scanValue(op string, rows *sql.Rows) ([]byte, error) {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, storageErr(op, err)
		}
		if err := rows.Close(); err != nil {
			return nil, storageErr(op, err)
		}
		return nil, storage.ErrNotFound
	}
	var v []byte // database/sql copies into a fresh slice the caller owns
	if err := rows.Scan(&v); err != nil {
		return nil, storageErr(op, err)
	}
	if rows.Next() {
		return nil, storageErr(op, errors.New("gormstore: more than one row for a key"))
	}
	if err := rows.Err(); err != nil {
		return nil, storageErr(op, err)
	}
	if err := rows.Close(); err != nil {
		return nil, storageErr(op, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// hideParams wraps a gorm logger so that the SQL it prints (on errors or
// slow queries) keeps its placeholders instead of showing keys and values.
type hideParams struct{ logger.Interface }

func (h hideParams) LogMode(l logger.LogLevel) logger.Interface {
	return hideParams{h.Interface.LogMode(l)}
}

func (hideParams) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

var _ gorm.ParamsFilter = hideParams{}
