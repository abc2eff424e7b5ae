// Package gormstore is a storage.Store, storage.Taker and
// storage.Locker over any *gorm.DB whose dialect is SQLite or Postgres.
//
// Most apps use the one-line constructors in stores/sqlitestore and
// stores/postgresstore, which open and own the database. Use New directly to
// put the store on a *gorm.DB your app already has; importing this package
// compiles no database driver.
//
// # Data layout
//
// Entries live in one table (default "ginoauth_kv"): key (text primary key),
// value (bytes), expires_at (nullable, indexed), created_at and updated_at.
// Locks are lease rows in a second table (default "<table>_locks"). New
// creates both unless Options.SkipMigration is set; DDL returns the exact
// statements for a dialect so you can put them in your own migrations.
//
// Timestamps are computed in Go (Options.Now) and stored in UTC: timestamptz
// on Postgres, fixed-width "YYYY-MM-DD HH:MM:SS.ffffff" text on SQLite so that
// text order is time order. Every instance sharing the tables should run with
// a synchronised clock (NTP); skew shifts TTLs and lock leases by the same
// amount.
//
// # Behaviour
//
//   - Set is one INSERT ... ON CONFLICT (key) DO UPDATE statement.
//   - Get and Take filter out expired rows in SQL, so correctness never
//     depends on cleanup having run.
//   - Take is one DELETE ... RETURNING statement: among concurrent takers, in
//     any number of processes, exactly one gets the value.
//   - Lock upserts a lease row only when no unexpired lease exists, polling
//     with a short backoff (2ms growing to 50ms) until it wins or ctx ends.
//     Waiters in the same process are woken at once by Unlock. A lease lapses
//     by itself after its ttl, so a crashed holder blocks others for at most
//     that long.
//   - Every failure is a *storage.Error; only a missing or expired
//     key gives storage.ErrNotFound.
//   - Invalid keys (see storage.ValidateKey) are rejected by Set and Lock;
//     Get and Take report them as not found (they cannot have been stored)
//     and Delete ignores them, so a hostile oversized identifier never turns
//     into a storage failure.
//
// # Cleanup
//
// With Options.CleanupInterval > 0, New starts one goroutine that removes
// expired entries and lapsed lock rows every interval, in batches of
// Options.CleanupBatchSize rows so a large backlog never holds a long lock.
// Close stops it and waits for it. DeleteExpired runs one pass on demand
// (for tests or a cron job).
//
// # Logging
//
// The store logs only cleanup failures, through Options.Logger. It also
// wraps the gorm logger of the DB it is given so that SQL logged by gorm
// (errors, slow queries) shows placeholders instead of keys and values.
package gormstore
