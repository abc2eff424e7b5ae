package gormstore

import (
	"bytes"
	"context"
	"errors"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
)

func TestSuite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		if kind.name == DialectPostgres {
			pgDSN(t)
		}
		storagetest.Run(t, harness(kind))
	})
}

// TestFaults checks that failures are *storage.Error with the
// operation named, never ErrNotFound, for a closed pool and a dropped table.
func TestFaults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		breakers := map[string]func(t *testing.T, f *fixture){
			"closed pool": func(t *testing.T, f *fixture) {
				sqlDB, _ := f.db.DB()
				_ = sqlDB.Close()
			},
			"dropped tables": func(t *testing.T, f *fixture) {
				for _, table := range []string{f.opts.Table, f.opts.Table + "_locks", f.opts.Table + "_sets"} {
					if err := f.db.Exec(`DROP TABLE "` + table + `"`).Error; err != nil {
						t.Fatal(err)
					}
				}
			},
		}
		for name, breakIt := range breakers {
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, kind, Options{})
				s := f.store
				ctx := context.Background()
				if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
					t.Fatal(err)
				}
				if err := s.AddMember(ctx, "set", "m", 0); err != nil {
					t.Fatal(err)
				}
				breakIt(t, f)
				check := func(op string, err error) {
					t.Helper()
					var se *storage.Error
					if !errors.As(err, &se) || se.Op != op {
						t.Errorf("%s: %v (%T), want *storage.Error with Op %q", op, err, err, op)
					}
					if errors.Is(err, storage.ErrNotFound) {
						t.Errorf("%s: a fault reported as ErrNotFound", op)
					}
				}
				_, err := s.Get(ctx, "k")
				check("get", err)
				check("set", s.Set(ctx, "k", []byte("v"), 0))
				check("delete", s.Delete(ctx, "k"))
				_, err = s.Take(ctx, "k")
				check("take", err)
				_, err = s.Lock(ctx, "l", time.Second)
				check("lock", err)
				check("add-member", s.AddMember(ctx, "set", "m2", time.Hour))
				check("remove-member", s.RemoveMember(ctx, "set", "m"))
				got, err := s.Members(ctx, "set")
				check("members", err)
				if got != nil {
					t.Errorf("Members on a broken store returned %q", got)
				}
				_, err = s.DeleteExpired(ctx)
				check("cleanup", err)
			})
		}
	})
}

func TestContextErrorsAreStorageErrors(t *testing.T) {
	f := newFixture(t, backends[0], Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.store.Get(ctx, "k")
	var se *storage.Error
	if !errors.As(err, &se) || !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled ctx: %v, want a StorageError wrapping context.Canceled", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	db, _ := openSQLite(t, "")
	bad := map[string]Options{
		"quote in table":       {Table: `kv"; DROP TABLE x; --`},
		"dot in table":         {Table: "public.kv"},
		"leading digit":        {Table: "1kv"},
		"too long":             {Table: strings.Repeat("t", maxTableName+1)},
		"bad lock table":       {LockTable: "locks-table"},
		"same tables":          {Table: "kv", LockTable: "kv"},
		"set table is table":   {Table: "kv", SetTable: "kv"},
		"set table is locks":   {LockTable: "locks", SetTable: "locks"},
		"bad set table":        {SetTable: "sets;"},
		"set table too long":   {SetTable: strings.Repeat("s", maxSetTableName+1)},
		"negative interval":    {CleanupInterval: -time.Second},
		"negative batch":       {CleanupBatchSize: -1},
		"non-ASCII table name": {Table: "tablé"},
	}
	for name, o := range bad {
		if s, err := New(db, o); err == nil {
			_ = s.Close()
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) accepted")
	}
	good := Options{Table: strings.Repeat("t", maxTableName), CleanupBatchSize: 7}
	if o, err := good.withDefaults(); err != nil || len(o.SetTable) > maxSetTableName {
		t.Fatalf("the default set table of a %d-byte table: %q, %v", maxTableName, o.SetTable, err)
	}
	s, err := New(db, good)
	if err != nil {
		t.Fatalf("New with a %d-byte table name: %v", maxTableName, err)
	}
	_ = s.Close()
}

// fakeDialector is a gorm dialect the store does not support.
type fakeDialector struct{ gorm.Dialector }

func (fakeDialector) Name() string                 { return "mysql" }
func (fakeDialector) Initialize(db *gorm.DB) error { return nil }

func TestUnsupportedDialect(t *testing.T) {
	db, err := gorm.Open(fakeDialector{}, &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(db, Options{}); err == nil || !strings.Contains(err.Error(), "mysql") {
		t.Errorf("New on a mysql dialect: %v, want an unsupported-dialect error", err)
	}
	if _, err := DDL("mysql", Options{}); err == nil {
		t.Error("DDL(mysql) gave no error")
	}
}

const wantSQLiteDDL = `CREATE TABLE IF NOT EXISTS "ginoauth_kv" (
	"key"        TEXT NOT NULL PRIMARY KEY,
	"value"      BLOB NOT NULL,
	"expires_at" DATETIME,
	"created_at" DATETIME NOT NULL,
	"updated_at" DATETIME NOT NULL
);

CREATE INDEX IF NOT EXISTS "ginoauth_kv_expires_at_idx" ON "ginoauth_kv" ("expires_at");

CREATE TABLE IF NOT EXISTS "ginoauth_kv_locks" (
	"name"       TEXT NOT NULL PRIMARY KEY,
	"owner"      TEXT NOT NULL,
	"expires_at" DATETIME NOT NULL
);

CREATE TABLE IF NOT EXISTS "ginoauth_kv_sets" (
	"set_name"   TEXT NOT NULL,
	"member"     TEXT NOT NULL,
	"expires_at" DATETIME,
	PRIMARY KEY ("set_name", "member")
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS "ginoauth_kv_sets_exp_idx" ON "ginoauth_kv_sets" ("expires_at");
`

const wantPostgresDDL = `CREATE TABLE IF NOT EXISTS "ginoauth_kv" (
	"key"        text PRIMARY KEY,
	"value"      bytea NOT NULL,
	"expires_at" timestamptz,
	"created_at" timestamptz NOT NULL,
	"updated_at" timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS "ginoauth_kv_expires_at_idx" ON "ginoauth_kv" ("expires_at");

CREATE TABLE IF NOT EXISTS "ginoauth_kv_locks" (
	"name"       text PRIMARY KEY,
	"owner"      text NOT NULL,
	"expires_at" timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS "ginoauth_kv_sets" (
	"set_name"   text NOT NULL,
	"member"     text NOT NULL,
	"expires_at" timestamptz,
	PRIMARY KEY ("set_name", "member")
);

CREATE INDEX IF NOT EXISTS "ginoauth_kv_sets_exp_idx" ON "ginoauth_kv_sets" ("expires_at");
`

func TestDDL(t *testing.T) {
	for dialect, want := range map[string]string{DialectSQLite: wantSQLiteDDL, DialectPostgres: wantPostgresDDL} {
		got, err := DDL(dialect, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("DDL(%s) =\n%s\nwant\n%s", dialect, got, want)
		}
	}
	got, _ := DDL(DialectSQLite, Options{Table: "sessions", LockTable: "session_locks", SetTable: "session_index"})
	for _, want := range []string{`"sessions_expires_at_idx" ON "sessions"`, `TABLE IF NOT EXISTS "session_locks"`,
		`TABLE IF NOT EXISTS "session_index"`, `"session_index_exp_idx" ON "session_index"`} {
		if !strings.Contains(got, want) {
			t.Errorf("DDL with custom tables lacks %s:\n%s", want, got)
		}
	}
}

// TestSkipMigration runs DDL's output as a user migration would, then opens
// the store with SkipMigration.
func TestSkipMigration(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		db, where := kind.open(t, "")
		opts := Options{Table: uniqueTable(t, kind, where), SkipMigration: true}
		s, err := New(db, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Set(context.Background(), "k", []byte("v"), 0); err == nil {
			t.Fatal("Set worked before the tables were created: SkipMigration created them")
		}
		if err := s.AddMember(context.Background(), "set", "m", 0); err == nil {
			t.Fatal("AddMember worked before the tables were created: SkipMigration created them")
		}
		ddl, err := DDL(kind.name, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range strings.Split(ddl, ";\n") {
			if strings.TrimSpace(st) != "" {
				if err := db.Exec(st).Error; err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Set(context.Background(), "k", []byte("v"), 0); err != nil {
			t.Fatalf("Set after running DDL: %v", err)
		}
		if err := s.AddMember(context.Background(), "set", "m", 0); err != nil {
			t.Fatalf("AddMember after running DDL: %v", err)
		}
	})
}

// TestMigrateTwice: New on existing tables is fine (IF NOT EXISTS).
func TestMigrateTwice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		f := newFixture(t, kind, Options{})
		if err := f.store.Set(context.Background(), "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		o := f.opts
		s2, err := New(f.db, o)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if v, err := s2.Get(context.Background(), "k"); err != nil || string(v) != "v" {
			t.Fatalf("Get after a second New = %q, %v", v, err)
		}
	})
}

// TestConcurrentMigrate starts several stores on the same new tables at
// once, as app instances booting together do. Postgres's CREATE TABLE IF
// NOT EXISTS fails under such a race without the advisory lock.
func TestConcurrentMigrate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		for round := range 3 {
			db, where := kind.open(t, "")
			table := uniqueTable(t, kind, where)
			const n = 6
			var wg sync.WaitGroup
			errs := make(chan error, n)
			start := make(chan struct{})
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mydb := db
					if kind.name == DialectPostgres {
						mydb, _ = kind.open(t, where)
					}
					<-start
					s, err := New(mydb, Options{Table: table})
					if err == nil {
						err = s.Close()
					}
					errs <- err
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("round %d: concurrent New: %v", round, err)
				}
			}
		}
	})
}

// TestLoggerHidesValues: gorm's logger, even at Info level (every
// statement), never sees keys or values.
func TestLoggerHidesValues(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	db, _ := openSQLite(t, "")
	db.Logger = logger.New(log.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), "", 0), logger.Config{LogLevel: logger.Info})
	s, err := New(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Set(ctx, "secret-key-123", []byte("secret-value-456"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "secret-key-123"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Take(ctx, "secret-key-123"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "secret-set", "secret-member", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Members(ctx, "secret-set"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(ctx, "secret-set", "secret-member"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "INSERT INTO") {
		t.Fatalf("logger saw no SQL at all; the test is not testing anything:\n%s", out)
	}
	if strings.Contains(out, "secret") {
		t.Errorf("gorm logged a key or value:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestTimestamps checks the stored columns: expires_at NULL for ttl 0,
// created_at kept on overwrite but restarted when the old entry had expired.
func TestTimestamps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		var c clock
		f := newFixture(t, kind, Options{Now: c.Now})
		s, ctx := f.store, context.Background()
		type row struct {
			Expires         *string
			Created, Update string
		}
		read := func(key string) row {
			t.Helper()
			var r row
			q := `SELECT CAST("expires_at" AS TEXT), CAST("created_at" AS TEXT), CAST("updated_at" AS TEXT) FROM "` + f.opts.Table + `" WHERE "key" = ?`
			if err := s.DB().Raw(q, key).Row().Scan(&r.Expires, &r.Created, &r.Update); err != nil {
				t.Fatal(err)
			}
			return r
		}
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		r0 := read("k")
		if r0.Expires != nil {
			t.Errorf("ttl 0 stored expires_at %q, want NULL", *r0.Expires)
		}
		c.Advance(time.Minute)
		if err := s.Set(ctx, "k", []byte("v2"), time.Hour); err != nil {
			t.Fatal(err)
		}
		r1 := read("k")
		if r1.Created != r0.Created || r1.Update == r0.Update || r1.Expires == nil {
			t.Errorf("overwrite of a live entry: %+v then %+v; want created_at kept, updated_at and expires_at set", r0, r1)
		}
		c.Advance(2 * time.Hour) // the entry expired, cleanup has not run
		if err := s.Set(ctx, "k", []byte("v3"), 0); err != nil {
			t.Fatal(err)
		}
		r2 := read("k")
		if r2.Created == r1.Created || r2.Expires != nil {
			t.Errorf("overwrite of an expired entry: %+v then %+v; want a new created_at and NULL expires_at", r1, r2)
		}
		if kind.name == DialectSQLite && len(r2.Created) != len(sqliteTimeFormat) {
			t.Errorf("SQLite timestamp %q is not fixed-width", r2.Created)
		}
	})
}

// TestClockControlsExpiry: expiry follows Options.Now, so every dialect
// agrees on it and tests can move time.
func TestClockControlsExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		var c clock
		f := newFixture(t, kind, Options{Now: c.Now})
		s, ctx := f.store, context.Background()
		if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		c.Advance(59 * time.Minute)
		if _, err := s.Get(ctx, "k"); err != nil {
			t.Fatalf("Get before expiry: %v", err)
		}
		c.Advance(2 * time.Minute)
		if _, err := s.Get(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after expiry: %v, want ErrNotFound", err)
		}
		if n := count(t, s, f.opts.Table); n != 1 {
			t.Fatalf("row count %d: the expired row should still be there (invisible)", n)
		}
		// So does a set member's, and the expired row stays (invisible)
		// until cleanup.
		if err := s.AddMember(ctx, "set", "m", time.Hour); err != nil {
			t.Fatal(err)
		}
		c.Advance(59 * time.Minute)
		if got, err := s.Members(ctx, "set"); err != nil || len(got) != 1 {
			t.Fatalf("Members before expiry = %q, %v", got, err)
		}
		c.Advance(2 * time.Minute)
		if got, err := s.Members(ctx, "set"); err != nil || len(got) != 0 {
			t.Fatalf("Members after expiry = %q, %v; want none", got, err)
		}
		if n := count(t, s, f.opts.Table+"_sets"); n != 1 {
			t.Fatalf("set row count %d: the expired member should still be there (invisible)", n)
		}
		// A lock lease lapses by the same clock.
		if _, err := s.Lock(ctx, "l", time.Hour); err != nil {
			t.Fatal(err)
		}
		c.Advance(61 * time.Minute)
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := s.Lock(lctx, "l", time.Hour); err != nil {
			t.Fatalf("Lock after the lease lapsed by the clock: %v", err)
		}
	})
}

// TestUnlockIgnoresCancelledContext: a holder whose request was cancelled
// still releases the lock.
func TestUnlockIgnoresCancelledContext(t *testing.T) {
	f := newFixture(t, backends[0], Options{})
	ctx := context.Background()
	unlock, err := f.store.Lock(ctx, "l", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := unlock(cctx); err != nil {
		t.Fatal(err)
	}
	lctx, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if _, err := f.store.Lock(lctx, "l", time.Hour); err != nil {
		t.Fatalf("lock not released by an Unlock with a cancelled ctx: %v", err)
	}
}

func TestLockValidation(t *testing.T) {
	f := newFixture(t, backends[0], Options{})
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := f.store.Lock(context.Background(), "l", ttl); err == nil {
			t.Errorf("Lock with ttl %v accepted", ttl)
		}
	}
	if _, err := f.store.Lock(context.Background(), "", time.Second); err == nil {
		t.Error("Lock with an empty name accepted")
	}
}

// TestMembersQueryPlan: Members is a lookup in the set table's primary key,
// not a scan, so it stays fast however many sets the table holds.
func TestMembersQueryPlan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, kind backendKind) {
		f := newFixture(t, kind, Options{})
		s := f.store
		insertMembers(t, s, "acct:", 10, "m:", 2000, nil)
		var plan []string
		switch kind.name {
		case DialectSQLite:
			rows, err := s.DB().Raw(`EXPLAIN QUERY PLAN `+s.q.members, "acct:7", s.d.ts(time.Now())).Rows()
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
		case DialectPostgres:
			if err := s.DB().Exec(`ANALYZE ` + quote(s.opts.SetTable)).Error; err != nil {
				t.Fatal(err)
			}
			rows, err := s.DB().Raw(`EXPLAIN `+s.q.members, "acct:7", s.d.ts(time.Now())).Rows()
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
		}
		text := strings.Join(plan, "\n")
		want := map[string]string{
			DialectSQLite:   "USING PRIMARY KEY (set_name=?)",
			DialectPostgres: s.opts.SetTable + "_pkey",
		}[kind.name]
		if !strings.Contains(text, want) {
			t.Errorf("Members does not use the primary key (want %q in the plan):\n%s", want, text)
		}
	})
}

// TestMembersOfInvalidSet: a set name that cannot have been stored has no
// members, and removing from it is a no-op, rather than a storage failure.
func TestMembersOfInvalidSet(t *testing.T) {
	f := newFixture(t, backends[0], Options{})
	ctx := context.Background()
	if got, err := f.store.Members(ctx, strings.Repeat("x", storage.MaxKeyLength+1)); err != nil || got != nil {
		t.Errorf("Members of an oversized set name = %q, %v; want none and nil", got, err)
	}
	if err := f.store.RemoveMember(ctx, "set", ""); err != nil {
		t.Errorf("RemoveMember of an empty member: %v", err)
	}
}
