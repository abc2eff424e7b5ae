package gormstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// insertExpired bulk-inserts n rows named prefix+1..prefix+n that expired at
// expiredAt, generated inside the database so 100k rows take well under a
// second.
func insertExpired(t testing.TB, s *Store, prefix string, n int, expiredAt time.Time) {
	t.Helper()
	ts := s.d.ts(expiredAt)
	t0 := s.d.ts(expiredAt.Add(-time.Hour))
	table := quote(s.opts.Table)
	var q string
	switch s.d.name {
	case DialectSQLite:
		q = `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
INSERT INTO ` + table + ` ("key", "value", "expires_at", "created_at", "updated_at")
SELECT ? || i, x'00', ?, ?, ? FROM seq`
	case DialectPostgres:
		q = `INSERT INTO ` + table + ` ("key", "value", "expires_at", "created_at", "updated_at")
SELECT CAST(? AS text) || i::text, decode('00', 'hex'), ?, ?, ? FROM generate_series(1, CAST(? AS int)) AS i`
	}
	args := []any{n, prefix, ts, t0, t0}
	if s.d.name == DialectPostgres {
		args = []any{prefix, ts, t0, t0, n}
	}
	res := s.DB().Exec(q, args...)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if res.RowsAffected != int64(n) {
		t.Fatalf("inserted %d rows, want %d", res.RowsAffected, n)
	}
}

// insertMembers bulk-inserts n set members named memberPrefix+1..n, into
// sets named setPrefix+(i/perSet) (so perSet members per set), expiring at
// expires (nil: never), generated inside the database.
func insertMembers(t testing.TB, s *Store, setPrefix string, perSet int, memberPrefix string, n int, expires *time.Time) {
	t.Helper()
	var exp any
	if expires != nil {
		exp = s.d.ts(*expires)
	}
	table := quote(s.opts.SetTable)
	var (
		q    string
		args []any
	)
	switch s.d.name {
	case DialectSQLite:
		q = `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
INSERT INTO ` + table + ` ("set_name", "member", "expires_at")
SELECT ? || (i / ?), ? || i, ? FROM seq`
		args = []any{n, setPrefix, perSet, memberPrefix, exp}
	case DialectPostgres:
		q = `INSERT INTO ` + table + ` ("set_name", "member", "expires_at")
SELECT CAST(? AS text) || (i / CAST(? AS int))::text, CAST(? AS text) || i::text, CAST(? AS timestamptz)
FROM generate_series(1, CAST(? AS int)) AS i`
		args = []any{setPrefix, perSet, memberPrefix, exp, n}
	}
	res := s.DB().Exec(q, args...)
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	if res.RowsAffected != int64(n) {
		t.Fatalf("inserted %d members, want %d", res.RowsAffected, n)
	}
}

// TestCleanupMembers removes a backlog of expired set members in batches
// and keeps the live ones, in the sets being cleaned and in others.
func TestCleanupMembers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		const backlog = 20_000
		f := newFixture(t, kind, Options{CleanupBatchSize: 500})
		s, ctx := f.store, context.Background()
		expired := time.Now().Add(-time.Minute)
		insertMembers(t, s, "acct:", 10, "old:", backlog, &expired)
		for i := range 5 {
			if err := s.AddMember(ctx, "acct:7", fmt.Sprint("live:", i), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddMember(ctx, "acct:other", "forever", 0); err != nil {
			t.Fatal(err)
		}
		n, m, err := s.deleteExpired(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 || m != backlog {
			t.Errorf("deleteExpired removed %d entries and %d members, want 0 and %d", n, m, backlog)
		}
		if got := count(t, s, f.opts.Table+"_sets"); got != 6 {
			t.Errorf("%d member rows left, want the 6 live ones", got)
		}
		if got, err := s.Members(ctx, "acct:7"); err != nil || len(got) != 5 {
			t.Errorf("Members of a cleaned set = %q, %v; want the 5 live members", got, err)
		}
	})
}

// TestCleanupRacingAddMember is TestCleanupRacingSet for members: every
// expired member is added again with a long ttl while cleanup runs, and
// each must end up live.
func TestCleanupRacingAddMember(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		const n = 1000
		f := newFixture(t, kind, Options{CleanupBatchSize: 50})
		s, ctx := f.store, context.Background()
		other := f.reopen(t)
		expired := time.Now().Add(-time.Minute)
		insertMembers(t, s, "acct:", 100, "m:", n, &expired)

		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.DeleteExpired(ctx); err != nil {
				t.Error(err)
			}
		}()
		const writers = 4
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w + 1; i <= n; i += writers {
					if err := other.AddMember(ctx, fmt.Sprint("acct:", i/100), fmt.Sprint("m:", i), time.Hour); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		var live int64
		q := `SELECT COUNT(*) FROM ` + quote(s.opts.SetTable) + ` WHERE "expires_at" > ?`
		if err := s.DB().Raw(q, s.d.ts(time.Now())).Scan(&live).Error; err != nil {
			t.Fatal(err)
		}
		if live != n {
			t.Errorf("%d of %d members that were added during cleanup are live; cleanup deleted %d live members", live, n, n-live)
		}
	})
}

// TestCleanupSparesRevivedMember is TestCleanupSparesRevivedRow for the set
// table, whose cleanup finds rows by ctid: a member renewed by a
// transaction that commits while cleanup runs must survive.
func TestCleanupSparesRevivedMember(t *testing.T) {
	kind := backends[1]
	f := newFixture(t, kind, Options{})
	s, ctx := f.store, context.Background()
	expired := time.Now().Add(-time.Minute)
	insertMembers(t, s, "acct", 10, "m", 3, &expired) // all in set acct0

	db2, _ := kind.open(t, f.where)
	tx := db2.Begin()
	q := `UPDATE ` + quote(s.opts.SetTable) + ` SET "expires_at" = ? WHERE "set_name" = ? AND "member" = ?`
	if err := tx.Exec(q, s.d.ts(time.Now().Add(time.Hour)), "acct0", "m2").Error; err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.DeleteExpired(ctx)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := s.Members(ctx, "acct0"); err != nil || len(got) != 1 || got[0] != "m2" {
		t.Fatalf("Members after cleanup = %q, %v; want the revived m2 alone", got, err)
	}
	if n := count(t, s, s.opts.SetTable); n != 1 {
		t.Fatalf("%d member rows left, want 1 (the revived one)", n)
	}
}

// TestCleanupBacklog removes a 100k-row expired backlog in batches while
// Gets of live keys go on and must succeed without long waits.
func TestCleanupBacklog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		const backlog = 100_000
		f := newFixture(t, kind, Options{CleanupBatchSize: 1000})
		s, ctx := f.store, context.Background()
		insertExpired(t, s, "old:", backlog, time.Now().Add(-time.Minute))
		const live = 10
		for i := range live {
			if err := s.Set(ctx, fmt.Sprint("live:", i), []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}

		done := make(chan struct{})
		var (
			removed int64
			cerr    error
		)
		start := time.Now()
		go func() {
			defer close(done)
			removed, cerr = s.DeleteExpired(ctx)
		}()
		gets, failures := 0, 0
		var slowest time.Duration
	loop:
		for i := 0; ; i++ {
			select {
			case <-done:
				break loop
			default:
			}
			t0 := time.Now()
			if _, err := s.Get(ctx, fmt.Sprint("live:", i%live)); err != nil {
				failures++
				t.Errorf("Get of a live key during cleanup: %v", err)
			} else {
				gets++
			}
			slowest = max(slowest, time.Since(t0))
		}
		took := time.Since(start)
		if cerr != nil {
			t.Fatal(cerr)
		}
		t.Logf("%s: removed %d expired rows in %v; %d Gets during cleanup, slowest %v", kind.name, removed, took, gets, slowest)
		if removed != backlog {
			t.Errorf("DeleteExpired removed %d, want %d", removed, backlog)
		}
		if n := count(t, s, f.opts.Table); n != live {
			t.Errorf("%d rows left, want the %d live ones", n, live)
		}
		// One unbounded DELETE would hold a reader for about the whole pass
		// on SQLite; with batches, a reader waits for one batch at most.
		if slowest > took/2 {
			t.Errorf("a Get waited %v during a %v cleanup: readers were blocked by one long statement", slowest, took)
		}
		if gets == 0 {
			t.Error("no Get ran during cleanup")
		}
		if failures > 0 {
			t.Errorf("%d Gets failed during cleanup", failures)
		}
	})
}

// TestCleanupRacingSet runs cleanup while every expired key is Set again
// with a long TTL. Whatever the interleaving, each Set happened, so every
// key must end up live: cleanup may only delete rows that are expired when
// it deletes them. On Postgres this fails if the DELETE does not re-check
// expires_at on the row version it deletes.
func TestCleanupRacingSet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		const n = 1000
		f := newFixture(t, kind, Options{CleanupBatchSize: 50})
		s, ctx := f.store, context.Background()
		other := f.reopen(t) // writers on their own pool
		insertExpired(t, s, "k:", n, time.Now().Add(-time.Minute))

		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.DeleteExpired(ctx); err != nil {
				t.Error(err)
			}
		}()
		const writers = 4
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w + 1; i <= n; i += writers {
					if err := other.Set(ctx, fmt.Sprint("k:", i), []byte("new"), time.Hour); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		var missing int64
		q := `SELECT COUNT(*) FROM ` + quote(f.opts.Table) + ` WHERE "expires_at" > ?`
		if err := s.DB().Raw(q, s.d.ts(time.Now())).Scan(&missing).Error; err != nil {
			t.Fatal(err)
		}
		if missing != n {
			t.Errorf("%d of %d keys that were Set during cleanup are live; cleanup deleted %d live entries", missing, n, n-missing)
		}
	})
}

// TestCleanupGoroutine: the background pass removes expired entries and
// lapsed locks, and stops for good at Close.
func TestCleanupGoroutine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		var c clock
		db, where := kind.open(t, "")
		opts := Options{Table: uniqueTable(t, kind, where), CleanupInterval: 10 * time.Millisecond, Now: c.Now}
		ignore := goleak.IgnoreCurrent()
		s, err := New(db, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		for i := range 50 {
			if err := s.Set(ctx, fmt.Sprint("k", i), []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Set(ctx, "forever", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lock(ctx, "abandoned", time.Minute); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if err := s.AddMember(ctx, "acct", fmt.Sprint("m", i), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddMember(ctx, "acct", "forever", 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if n := count(t, s, opts.Table); n != 51 {
			t.Fatalf("cleanup removed live entries: %d rows", n)
		}
		if n := count(t, s, opts.Table+"_sets"); n != 21 {
			t.Fatalf("cleanup removed live members: %d rows", n)
		}
		c.Advance(2 * time.Minute)
		waitFor(t, 5*time.Second, "expired rows, members and lapsed locks removed", func() bool {
			return count(t, s, opts.Table) == 1 && count(t, s, opts.Table+"_locks") == 0 && count(t, s, opts.Table+"_sets") == 1
		})

		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		goleak.VerifyNone(t, ignore)
		// Stopped for good: nothing removes new expired rows.
		insertExpired(t, s, "after:", 10, c.Now().Add(-time.Minute))
		time.Sleep(50 * time.Millisecond)
		if n := count(t, s, opts.Table); n != 11 {
			t.Errorf("cleanup ran after Close: %d rows, want 11", n)
		}
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoGoroutineWithoutInterval: CleanupInterval 0 starts nothing.
func TestNoGoroutineWithoutInterval(t *testing.T) {
	db, _ := openSQLite(t, "")
	ignore := goleak.IgnoreCurrent()
	s, err := New(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, ignore)
	if s.done != nil {
		t.Error("a cleanup goroutine was started with CleanupInterval 0")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseConcurrent calls Close from many goroutines while a cleanup pass
// may be running: no race, no double close, and every call returns only
// once the goroutine has exited.
func TestCloseConcurrent(t *testing.T) {
	for round := range 20 {
		db, _ := openSQLite(t, "")
		ignore := goleak.IgnoreCurrent()
		s, err := New(db, Options{CleanupInterval: time.Millisecond, CleanupBatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		insertExpired(t, s, "x", 20, time.Now().Add(-time.Minute))
		time.Sleep(time.Duration(round%4) * time.Millisecond)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Close(); err != nil {
					t.Error(err)
				}
				select {
				case <-s.done:
				default:
					t.Error("Close returned before the cleanup goroutine exited")
				}
			}()
		}
		wg.Wait()
		goleak.VerifyNone(t, ignore)
	}
}

// TestCloseInterruptsPass: Close does not wait for a long cleanup pass to
// finish; it cancels it.
func TestCloseInterruptsPass(t *testing.T) {
	db, _ := openSQLite(t, "")
	s, err := New(db, Options{CleanupInterval: time.Millisecond, CleanupBatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50_000 // 10k statements: several seconds
	insertExpired(t, s, "x", n, time.Now().Add(-time.Minute))
	waitFor(t, 5*time.Second, "cleanup to start", func() bool { return count(t, s, s.opts.Table) < n })
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v during a cleanup pass", d)
	}
	if left := count(t, s, s.opts.Table); left == 0 {
		t.Log("the pass finished before Close; nothing interrupted")
	}
}

// TestCleanupFailureLogged: a failing pass is logged (without keys or
// values) and the goroutine keeps going once the database is back.
func TestCleanupFailureLogged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		var (
			mu  sync.Mutex
			buf bytes.Buffer
		)
		logs := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
		lg := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		}), nil))
		var c clock
		f := newFixture(t, kind, Options{CleanupInterval: 10 * time.Millisecond, Logger: lg, Now: c.Now})
		s, ctx := f.store, context.Background()
		if err := f.db.Exec(`DROP TABLE ` + quote(f.opts.Table)).Error; err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a logged cleanup failure", func() bool { return strings.Contains(logs(), "cleanup failed") })
		if err := s.migrate(); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "secret-key", []byte("secret-value"), time.Minute); err != nil {
			t.Fatal(err)
		}
		c.Advance(2 * time.Minute)
		waitFor(t, 5*time.Second, "cleanup to resume", func() bool { return count(t, s, f.opts.Table) == 0 })
		if strings.Contains(logs(), "secret") {
			t.Errorf("log contains a key or value:\n%s", logs())
		}
	})
}

// TestCloseDB: Close closes the pool only when the store owns it.
func TestCloseDB(t *testing.T) {
	for _, owns := range []bool{false, true} {
		db, _ := openSQLite(t, "")
		s, err := New(db, Options{CloseDB: owns})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		sqlDB, _ := db.DB()
		if pingErr := sqlDB.Ping(); (pingErr != nil) != owns {
			t.Errorf("CloseDB %v: after Close, Ping = %v", owns, pingErr)
		}
	}
}

// TestCleanupSparesRevivedRow makes the race in TestCleanupRacingSet
// deterministic on Postgres: a transaction revives an expired row (new
// expiry, not yet committed) while a cleanup pass runs; after it commits
// the row must still be there. A cleanup DELETE that relies on a key list
// taken from its snapshot waits for the row lock, then deletes the revived
// row; ours skips locked rows and re-checks expires_at.
func TestCleanupSparesRevivedRow(t *testing.T) {
	kind := backends[1]
	f := newFixture(t, kind, Options{})
	s, ctx := f.store, context.Background()
	insertExpired(t, s, "k", 3, time.Now().Add(-time.Minute))

	db2, _ := kind.open(t, f.where)
	tx := db2.Begin()
	q := `UPDATE ` + quote(f.opts.Table) + ` SET "expires_at" = ? WHERE "key" = ?`
	if err := tx.Exec(q, s.d.ts(time.Now().Add(time.Hour)), "k2").Error; err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.DeleteExpired(ctx)
		done <- err
	}()
	// Give the pass time to reach the locked row (a buggy one blocks on it).
	time.Sleep(300 * time.Millisecond)
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "k2"); err != nil || string(v) != "\x00" {
		t.Fatalf("revived row after cleanup: %q, %v; cleanup deleted a live entry", v, err)
	}
	if _, err := s.Get(ctx, "k1"); err == nil {
		t.Fatal("k1 is expired but visible")
	}
	if n := count(t, s, f.opts.Table); n != 1 {
		t.Fatalf("%d rows left, want 1 (the revived one)", n)
	}
}
