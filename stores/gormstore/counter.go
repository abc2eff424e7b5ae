package gormstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Counter = (*Store)(nil)

// counterQuery is storage.Counter's one statement: an upsert on the
// key-value table that creates the counter (value by, expiring ttl from
// now), restarts one whose expiry has passed, or adds by to a live one
// without touching its expiry, and returns the new value. One statement,
// so concurrent increments on any number of connections serialise on the
// row and none is lost. Counters are rows like entries, so cleanup
// removes expired ones with the rest.
//
// The value is the count in decimal: bytea text in Postgres, and in SQLite
// (which has no column types to speak of) an integer.
//
// Binds: key, by, expires_at, now (created_at), now (updated_at).
func counterQuery(d dialect, table string) string {
	t := quote(table)
	expired := t + `."expires_at" IS NOT NULL AND ` + t + `."expires_at" <= excluded."updated_at"`
	sum := t + `."value" + excluded."value"`
	if d.name == DialectPostgres {
		sum = `convert_to((convert_from(` + t + `."value", 'UTF8')::bigint + convert_from(excluded."value", 'UTF8')::bigint)::text, 'UTF8')`
	}
	return `INSERT INTO ` + t + ` ("key", "value", "expires_at", "created_at", "updated_at") VALUES (?, ?, ?, ?, ?)
ON CONFLICT ("key") DO UPDATE SET
"value" = CASE WHEN ` + expired + ` THEN excluded."value" ELSE ` + sum + ` END,
"expires_at" = CASE WHEN ` + expired + ` THEN excluded."expires_at" ELSE ` + t + `."expires_at" END,
"created_at" = CASE WHEN ` + expired + ` THEN excluded."created_at" ELSE ` + t + `."created_at" END,
"updated_at" = excluded."updated_at"
RETURNING "value"`
}

// Incr implements storage.Counter with one INSERT ... ON CONFLICT ...
// RETURNING statement on the key-value table (always on the *gorm.DB's
// pool, never Options.Reader).
func (s *Store) Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, storageErr("incr", err)
	}
	if err := storage.ValidateKey(key); err != nil {
		return 0, storageErr("incr", err)
	}
	if by < 1 || ttl <= 0 {
		return 0, storageErr("incr", fmt.Errorf("gormstore: by must be at least 1 and ttl positive (got %d, %v)", by, ttl))
	}
	var arg any = by
	if s.d.name == DialectPostgres {
		arg = []byte(strconv.FormatInt(by, 10))
	}
	now := s.opts.Now()
	ts := s.d.ts(now)
	var v any
	row := s.db.WithContext(ctx).Raw(counterQuery(s.d, s.opts.Table), key, arg, s.d.ts(now.Add(ttl)), ts, ts).Row()
	if err := row.Scan(&v); err != nil {
		return 0, storageErr("incr", err)
	}
	var n int64
	var err error
	switch v := v.(type) {
	case int64:
		n = v
	case []byte:
		n, err = strconv.ParseInt(string(v), 10, 64)
	case string:
		n, err = strconv.ParseInt(v, 10, 64)
	default:
		err = fmt.Errorf("unexpected counter value of type %T", v)
	}
	if err != nil {
		return 0, storageErr("incr", fmt.Errorf("gormstore: key %q does not hold a counter: %w", key, err))
	}
	return n, nil
}
