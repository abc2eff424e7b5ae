// Package gormstore is a storage.Store, storage.Taker, storage.Locker
// (renewable: storage.RenewableLocker), storage.Indexer, storage.Swapper, storage.StaleReader and storage.Counter
// over any *gorm.DB whose dialect is SQLite or Postgres.
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
// Locks are lease rows in a second table (default "<table>_locks"); Renew
// is one UPDATE of the row that only a live lease of the caller's token
// matches (the library renews its 6 s refresh and device leases every 2 s,
// so an instance that dies holding one blocks that session for about 5 s). The
// members of the storage.Indexer sets are rows of a third (default
// "<table>_sets", Options.SetTable): set_name, member, expires_at (nullable,
// indexed), with the primary key (set_name, member), so listing a set is a
// range of that key (on SQLite the table is WITHOUT ROWID: a set's rows are
// stored together). New creates all three unless Options.SkipMigration is
// set; DDL returns the exact statements for a dialect so you can put them
// in your own migrations. An app that runs its own migrations and upgrades
// from a version without the set table must add it (the last two
// statements of DDL); until then only the Indexer methods fail.
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
//   - Incr (storage.Counter) is one INSERT ... ON CONFLICT ... RETURNING
//     statement on the entry table: a counter is an entry whose value is the
//     count and whose expires_at is set when it is created (or restarted
//     after expiry) and left alone by increments. Cleanup removes expired
//     counters with the other entries; no table is added.
//   - Lock upserts a lease row only when no unexpired lease exists, polling
//     with a short backoff (2ms growing to 50ms) until it wins or ctx ends.
//     Waiters in the same process are woken at once by Unlock. A lease lapses
//     by itself after its ttl, so a crashed holder blocks others for at most
//     that long.
//   - AddMember is one INSERT ... ON CONFLICT (set_name, member) DO UPDATE
//     of the member's own row and RemoveMember one DELETE of it, so
//     concurrent changes to one set never overwrite each other. Members
//     filters out expired members in SQL, like Get.
//   - Every failure is a *storage.Error; only a missing or expired
//     key gives storage.ErrNotFound.
//   - A statement that may run twice with the same outcome (Get, Members,
//     the Set and AddMember upserts, Delete, RemoveMember) is sent again
//     when it failed because its pooled connection had died (a database
//     restart); Take and Lock are not, as theirs might have run.
//     postgresstore also checks pooled connections before reuse.
//   - Invalid keys (see storage.ValidateKey) are rejected by Set, Lock and
//     AddMember (set names and members follow the key rules); Get and Take
//     report them as not found and Members as an empty set (they cannot
//     have been stored), and Delete and RemoveMember ignore them, so a
//     hostile oversized identifier never turns into a storage failure.
//
// # Replica reads
//
// With Options.Replica, GetStale (the library's session check, and
// nothing else) reads an asynchronous streaming replica while its lag is
// known to be within Replica.MaxStaleness; see Store.GetStale. Lag is
// measured by WAL position, two one-row queries every CheckInterval, only
// while GetStale is in use. Without a replica GetStale is Get.
//
// # Cleanup
//
// With Options.CleanupInterval > 0, New starts one goroutine that removes
// expired entries, expired set members and lapsed lock rows every interval,
// in batches of Options.CleanupBatchSize rows so a large backlog never holds
// a long lock (on Postgres, each batch skips rows other transactions have
// locked, so several instances clean side by side).
// Close stops it and waits for it. DeleteExpired runs one pass on demand
// (for tests or a cron job).
//
// # Logging
//
// The store logs only cleanup failures, through Options.Logger. It also
// wraps the gorm logger of the DB it is given so that SQL logged by gorm
// (errors, slow queries) shows placeholders instead of keys and values.
package gormstore
