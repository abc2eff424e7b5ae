package gormstore

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Dialect names, as reported by gorm's Dialector.Name. They are the only
// dialects New and DDL accept: both need INSERT ... ON CONFLICT and
// DELETE ... RETURNING.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Defaults applied to a zero Options.
const (
	DefaultTable            = "ginoauth_kv"
	DefaultLockTableSuffix  = "_locks"
	DefaultSetTableSuffix   = "_sets"
	DefaultCleanupBatchSize = 1000
)

// Table names are spliced into SQL, so they are restricted to plain
// identifiers. 48 bytes leaves room for the "_expires_at_idx" suffix within
// Postgres's 63-byte identifier limit (longer names would be truncated and
// could collide); 55 for the set table leaves room for its "_exp_idx", and
// the default set table name (at most 48 + 5 bytes) fits.
const (
	maxTableName     = 48
	maxLockTableName = 63
	maxSetTableName  = 55
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func checkIdent(what, name string, max int) error {
	if !identRE.MatchString(name) || len(name) > max {
		return fmt.Errorf("gormstore: %s %q must be at most %d ASCII letters, digits or underscores, not starting with a digit", what, name, max)
	}
	return nil
}

func quote(ident string) string { return `"` + ident + `"` }

// sqliteTimeFormat is fixed-width UTC with microseconds (Postgres's
// precision): SQLite has no time type, so expires_at is compared as text and
// only a fixed width keeps text order equal to time order. It is also the
// form SQLite's own date functions and datetime('now') use.
const sqliteTimeFormat = "2006-01-02 15:04:05.000000"

// dialect holds what differs between SQLite and Postgres.
type dialect struct {
	name string
	// ts converts a time to the driver argument stored in timestamp columns.
	ts func(time.Time) any
	// ddl returns the schema statements for the three tables.
	ddl func(table, locks, sets string) []string
	// purge returns the batched cleanup DELETE for table, whose primary
	// key is the (quoted) columns pk. Binds: now, batch size, now.
	purge func(table string, pk ...string) string
}

var dialects = map[string]dialect{
	DialectSQLite: {
		name: DialectSQLite,
		ts:   func(t time.Time) any { return t.UTC().Format(sqliteTimeFormat) },
		ddl: func(table, locks, sets string) []string {
			return []string{
				`CREATE TABLE IF NOT EXISTS ` + quote(table) + ` (
	"key"        TEXT NOT NULL PRIMARY KEY,
	"value"      BLOB NOT NULL,
	"expires_at" DATETIME,
	"created_at" DATETIME NOT NULL,
	"updated_at" DATETIME NOT NULL
)`,
				`CREATE INDEX IF NOT EXISTS ` + quote(table+"_expires_at_idx") + ` ON ` + quote(table) + ` ("expires_at")`,
				`CREATE TABLE IF NOT EXISTS ` + quote(locks) + ` (
	"name"       TEXT NOT NULL PRIMARY KEY,
	"owner"      TEXT NOT NULL,
	"expires_at" DATETIME NOT NULL
)`,
				// WITHOUT ROWID stores the rows in primary-key order, so a
				// set's members are side by side: Members reads one range
				// of one b-tree, however many other sets the table holds.
				`CREATE TABLE IF NOT EXISTS ` + quote(sets) + ` (
	"set_name"   TEXT NOT NULL,
	"member"     TEXT NOT NULL,
	"expires_at" DATETIME,
	PRIMARY KEY ("set_name", "member")
) WITHOUT ROWID`,
				`CREATE INDEX IF NOT EXISTS ` + quote(sets+"_exp_idx") + ` ON ` + quote(sets) + ` ("expires_at")`,
			}
		},
		// One writer at a time, so no row can change under the statement;
		// the outer test only mirrors Postgres's. A composite key is
		// compared as a row value (the set table has no rowid).
		purge: func(table string, pk ...string) string {
			cols := strings.Join(pk, ", ")
			lhs := cols
			if len(pk) > 1 {
				lhs = "(" + cols + ")"
			}
			return `DELETE FROM ` + table + ` WHERE ` + lhs + ` IN (SELECT ` + cols + ` FROM ` + table +
				` WHERE "expires_at" <= ? LIMIT ?) AND "expires_at" <= ?`
		},
	},
	DialectPostgres: {
		name: DialectPostgres,
		ts:   func(t time.Time) any { return t.UTC() },
		ddl: func(table, locks, sets string) []string {
			return []string{
				`CREATE TABLE IF NOT EXISTS ` + quote(table) + ` (
	"key"        text PRIMARY KEY,
	"value"      bytea NOT NULL,
	"expires_at" timestamptz,
	"created_at" timestamptz NOT NULL,
	"updated_at" timestamptz NOT NULL
)`,
				`CREATE INDEX IF NOT EXISTS ` + quote(table+"_expires_at_idx") + ` ON ` + quote(table) + ` ("expires_at")`,
				`CREATE TABLE IF NOT EXISTS ` + quote(locks) + ` (
	"name"       text PRIMARY KEY,
	"owner"      text NOT NULL,
	"expires_at" timestamptz NOT NULL
)`,
				`CREATE TABLE IF NOT EXISTS ` + quote(sets) + ` (
	"set_name"   text NOT NULL,
	"member"     text NOT NULL,
	"expires_at" timestamptz,
	PRIMARY KEY ("set_name", "member")
)`,
				`CREATE INDEX IF NOT EXISTS ` + quote(sets+"_exp_idx") + ` ON ` + quote(sets) + ` ("expires_at")`,
			}
		},
		// = ANY(ARRAY(subquery)) rather than IN (subquery): the planner
		// turns IN into a hash join over the whole table, which made each
		// batch cost a full scan (6s for 100k rows instead of under 1s).
		// FOR UPDATE SKIP LOCKED lets several app instances clean at once
		// without queueing behind each other. The outer expires_at test is
		// not redundant: Postgres re-checks it on the newest version of a
		// row that a concurrent Set revived, which a key list alone would
		// not, and cleanup would delete a live entry. A composite key is
		// replaced by the row's ctid: the row is locked from the subquery
		// on, so its ctid cannot change before the DELETE reaches it.
		purge: func(table string, pk ...string) string {
			col := pk[0]
			if len(pk) > 1 {
				col = "ctid"
			}
			return `DELETE FROM ` + table + ` WHERE ` + col + ` = ANY(ARRAY(SELECT ` + col + ` FROM ` + table +
				` WHERE "expires_at" <= ? LIMIT ? FOR UPDATE SKIP LOCKED)) AND "expires_at" <= ?`
		},
	},
}

func lookupDialect(name string) (dialect, error) {
	d, ok := dialects[name]
	if !ok {
		return dialect{}, fmt.Errorf("gormstore: unsupported gorm dialect %q (want %q or %q)", name, DialectSQLite, DialectPostgres)
	}
	return d, nil
}

// DDL returns the statements New runs to create the schema for dialect
// (DialectSQLite or DialectPostgres), with the table names from opts
// (defaults applied), as one string of ';'-terminated statements. Use it to
// write your own migration when you set Options.SkipMigration.
func DDL(dialect string, opts Options) (string, error) {
	d, err := lookupDialect(dialect)
	if err != nil {
		return "", err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return "", err
	}
	return strings.Join(d.ddl(o.Table, o.LockTable, o.SetTable), ";\n\n") + ";\n", nil
}

// queries are built once per store; only bind values vary per call.
type queries struct {
	get, set, del, take                    string
	lock, unlock, renew                    string
	addMember, removeMember, members       string
	purgeEntries, purgeMembers, purgeLocks string
}

func buildQueries(d dialect, table, locks, sets string) queries {
	t, l, st := quote(table), quote(locks), quote(sets)
	live := `("expires_at" IS NULL OR "expires_at" > ?)`
	return queries{
		get: `SELECT "value" FROM ` + t + ` WHERE "key" = ? AND ` + live,
		// created_at restarts when the row being replaced had already
		// expired: for readers it is a new entry.
		set: `INSERT INTO ` + t + ` ("key", "value", "expires_at", "created_at", "updated_at") VALUES (?, ?, ?, ?, ?)
ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "expires_at" = excluded."expires_at", "updated_at" = excluded."updated_at",
"created_at" = CASE WHEN ` + t + `."expires_at" IS NOT NULL AND ` + t + `."expires_at" <= excluded."updated_at" THEN excluded."created_at" ELSE ` + t + `."created_at" END`,
		del:  `DELETE FROM ` + t + ` WHERE "key" = ?`,
		take: `DELETE FROM ` + t + ` WHERE "key" = ? AND ` + live + ` RETURNING "value"`,
		// Takes the lease if nobody holds it or the holder's lease lapsed;
		// RowsAffected says whether we won. One statement, so two
		// contenders can never both see the lock as free.
		lock: `INSERT INTO ` + l + ` ("name", "owner", "expires_at") VALUES (?, ?, ?)
ON CONFLICT ("name") DO UPDATE SET "owner" = excluded."owner", "expires_at" = excluded."expires_at"
WHERE ` + l + `."expires_at" <= ?`,
		unlock: `DELETE FROM ` + l + ` WHERE "name" = ? AND "owner" = ?`,
		// Extends only a live lease of this owner: a lapsed one is not
		// brought back, even if nobody took it since.
		renew: `UPDATE ` + l + ` SET "expires_at" = ? WHERE "name" = ? AND "owner" = ? AND "expires_at" > ?`,
		// One upsert per member: concurrent additions to one set touch
		// different rows and never overwrite each other.
		addMember: `INSERT INTO ` + st + ` ("set_name", "member", "expires_at") VALUES (?, ?, ?)
ON CONFLICT ("set_name", "member") DO UPDATE SET "expires_at" = excluded."expires_at"`,
		removeMember: `DELETE FROM ` + st + ` WHERE "set_name" = ? AND "member" = ?`,
		// A range of the primary key's leading column: an index lookup
		// whatever the table's size.
		members:      `SELECT "member" FROM ` + st + ` WHERE "set_name" = ? AND ` + live,
		purgeEntries: d.purge(t, `"key"`),
		purgeMembers: d.purge(st, `"set_name"`, `"member"`),
		purgeLocks:   d.purge(l, `"name"`),
	}
}
