package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb/pgreplica"
)

// These tests run on a real primary with a real streaming replica
// (scripts/ci/pg-replica.sh), whose replay they pause to make it lag.

// testBound is the MaxStaleness of the stores under test: short, so the
// checks that wait for it are quick.
const testBound = 300 * time.Millisecond

// replicaFixture is a store on the pair's primary that reads GetStale
// from its replica.
type replicaFixture struct {
	pair  *pgreplica.Pair
	table string
	store *Store
}

func openReplicaPool(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// newReplicaStore opens a store on table (a new one when table is "") on
// the pair's primary, with its own pools on both servers.
func newReplicaStore(t testing.TB, pair *pgreplica.Pair, table string, opts Options) *replicaFixture {
	t.Helper()
	db, _ := openPostgres(t, pair.PrimaryDSN)
	if table == "" {
		table = uniqueTable(t, backendKind{name: DialectPostgres}, pair.PrimaryDSN)
	} else {
		opts.SkipMigration = true
	}
	opts.Table = table
	if opts.Replica == nil {
		opts.Replica = &Replica{MaxStaleness: testBound}
	}
	opts.Replica.DB = openReplicaPool(t, pair.ReplicaDSN)
	s, err := New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &replicaFixture{pair: pair, table: table, store: s}
}

// TestReplicaSuite runs the storage contract, Stale/ checks included, on a
// store that reads GetStale from the replica.
func TestReplicaSuite(t *testing.T) {
	pair := pgreplica.Use(t)
	var tables sync.Map // *Store -> table
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			f := newReplicaStore(t, pair, "", Options{})
			tables.Store(f.store, f.table)
			return f.store
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			table, _ := tables.Load(s.(*Store))
			return newReplicaStore(t, pair, table.(string), Options{}).store
		},
		Break: func(t *testing.T, s storage.Store) {
			sqlDB, _ := s.(*Store).DB().DB()
			_ = sqlDB.Close()
		},
		PauseReplica: func(t *testing.T, _ storage.Store) func() { return pair.Pause(t) },
	})
}

// waitReplicaRead calls GetStale(key) until the replica answers it (at
// most 30 s): the first reads after a pause in use go to the primary
// until a lag sample says the replica is within the bound.
func waitReplicaRead(t *testing.T, s *Store, key string, want string) {
	t.Helper()
	ctx := context.Background()
	before := s.ReplicaStats().ReplicaReads
	deadline := time.Now().Add(30 * time.Second)
	for s.ReplicaStats().ReplicaReads == before {
		v, err := s.GetStale(ctx, key)
		if err != nil || string(v) != want {
			t.Fatalf("GetStale(%q) = %q, %v; want %q", key, v, err, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica answered no GetStale in 30 s: %+v", s.ReplicaStats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicaServesReads: with the replica keeping up, GetStale is
// answered by it, with the right value.
func TestReplicaServesReads(t *testing.T) {
	pair := pgreplica.Use(t)
	f := newReplicaStore(t, pair, "", Options{})
	ctx := context.Background()
	if err := f.store.Set(ctx, "sess:a", []byte("record a"), time.Hour); err != nil {
		t.Fatal(err)
	}
	pair.WaitCaughtUp(t)
	waitReplicaRead(t, f.store, "sess:a", "record a")
	if st := f.store.ReplicaStats(); st.Staleness < 0 {
		t.Errorf("ReplicaStats().Staleness = %v after a replica read, want it measured", st.Staleness)
	}
}

// TestReplicaIdlePrimary: a primary that writes nothing for many times the
// bound does not make its caught-up replica look stale. (The time since
// the last replayed transaction, pg_last_xact_replay_timestamp, grows
// without bound on an idle primary: a lag measured by it would send every
// check to the primary here.)
func TestReplicaIdlePrimary(t *testing.T) {
	pair := pgreplica.Use(t) // no other test process writes to the primary meanwhile
	f := newReplicaStore(t, pair, "", Options{})
	ctx := context.Background()
	if err := f.store.Set(ctx, "sess:idle", []byte("record"), time.Hour); err != nil {
		t.Fatal(err)
	}
	pair.WaitCaughtUp(t)
	time.Sleep(5 * testBound) // the primary stays idle
	waitReplicaRead(t, f.store, "sess:idle", "record")
}

// TestReplicaLogoutNotUndone: a logout on one instance and an "end
// everywhere" (Members, then Delete and RemoveMember each) on another,
// while the replica lags: once the bound has passed, no instance's
// GetStale finds any of the ended sessions, although the replica still
// holds every one of them.
func TestReplicaLogoutNotUndone(t *testing.T) {
	pair := pgreplica.Use(t)
	a := newReplicaStore(t, pair, "", Options{})
	b := newReplicaStore(t, pair, a.table, Options{})
	ctx := context.Background()
	const acct = "acct:did:plc:alice"
	sessions := []string{"sess:phone", "sess:laptop", "sess:tablet"}
	for _, k := range sessions {
		if err := a.store.Set(ctx, k, []byte("record "+k), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := a.store.AddMember(ctx, acct, k, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	pair.WaitCaughtUp(t)
	waitReplicaRead(t, a.store, sessions[0], "record "+sessions[0])
	waitReplicaRead(t, b.store, sessions[1], "record "+sessions[1])
	pair.Pause(t)

	// A login on b while the replica lags: the next check, on a, finds
	// the new session at once (a miss on the replica reads the primary).
	if err := b.store.Set(ctx, "sess:new-login", []byte("new"), time.Hour); err != nil {
		t.Fatal(err)
	}
	st0 := a.store.ReplicaStats()
	if v, err := a.store.GetStale(ctx, "sess:new-login"); err != nil || string(v) != "new" {
		t.Errorf("GetStale of a session created while the replica lags = %q, %v; want it found", v, err)
	}
	switch st := a.store.ReplicaStats(); {
	case st.MissFallbacks > st0.MissFallbacks:
	case st.LagFallbacks > st0.LagFallbacks:
		// The machine was slow enough for the last lag sample to be
		// older than the bound already: the primary answered directly.
		t.Logf("the miss path was not exercised: %+v", st)
	default:
		t.Errorf("GetStale of a key the paused replica cannot have went neither through a miss nor a lag fallback: %+v", st)
	}

	// The phone logs out on instance a; the laptop ends every session on
	// instance b.
	if err := a.store.Delete(ctx, "sess:phone"); err != nil {
		t.Fatal(err)
	}
	if err := a.store.RemoveMember(ctx, acct, "sess:phone"); err != nil {
		t.Fatal(err)
	}
	members, err := b.store.Members(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 {
		t.Fatalf("Members after the phone's logout = %q, want the 2 others (Members reads the primary)", members)
	}
	for _, m := range members {
		if err := b.store.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := b.store.RemoveMember(ctx, acct, m); err != nil {
			t.Fatal(err)
		}
	}
	ended := time.Now()

	time.Sleep(time.Until(ended.Add(testBound + 10*time.Millisecond)))
	for _, s := range []*Store{a.store, b.store} {
		for _, k := range sessions {
			if v, err := s.GetStale(ctx, k); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("GetStale(%q) %v after the session ended = %q, %v; want ErrNotFound", k, time.Since(ended).Round(time.Millisecond), v, err)
			}
		}
		if st := s.ReplicaStats(); st.LagFallbacks == 0 {
			t.Errorf("no GetStale fell back for lag while the replica was paused: %+v", st)
		}
	}
	// The replica really is behind: it still has every ended session.
	var onReplica int
	q := `SELECT COUNT(*) FROM ` + quote(a.table) + ` WHERE "key" LIKE 'sess:%'`
	if err := pair.Replica().QueryRowContext(ctx, q).Scan(&onReplica); err != nil {
		t.Fatal(err)
	}
	if onReplica != len(sessions) {
		t.Fatalf("the paused replica holds %d of the %d ended sessions; the test did not make it lag", onReplica, len(sessions))
	}
}

// TestReplicaNotAStandby: a "replica" that is a primary (no replay
// position) is never read; GetStale answers from the primary. It needs
// no replica: the shared test server plays both parts.
func TestReplicaNotAStandby(t *testing.T) {
	dsn := pgDSN(t)
	f := newFixture(t, backends[1], Options{Replica: &Replica{DB: openReplicaPool(t, dsn), MaxStaleness: 50 * time.Millisecond}})
	ctx := context.Background()
	if err := f.store.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if v, err := f.store.GetStale(ctx, "k"); err != nil || string(v) != "v" {
			t.Fatalf("GetStale = %q, %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := f.store.ReplicaStats(); st.ReplicaReads != 0 || st.Staleness != -1 {
		t.Errorf("ReplicaStats = %+v; want no replica reads and no staleness measured", st)
	}
}

// TestReplicaFailsOver: a replica that fails (its pool closed) costs no
// answer: GetStale reads the primary.
func TestReplicaFailsOver(t *testing.T) {
	pair := pgreplica.Use(t)
	f := newReplicaStore(t, pair, "", Options{})
	ctx := context.Background()
	if err := f.store.Set(ctx, "sess:x", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	pair.WaitCaughtUp(t)
	waitReplicaRead(t, f.store, "sess:x", "x")
	_ = f.store.replica.cfg.DB.Close()
	before := f.store.ReplicaStats()
	for range 3 {
		if v, err := f.store.GetStale(ctx, "sess:x"); err != nil || string(v) != "x" {
			t.Fatalf("GetStale with the replica gone = %q, %v", v, err)
		}
		if _, err := f.store.GetStale(ctx, "sess:missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetStale of a missing key with the replica gone: %v", err)
		}
	}
	if st := f.store.ReplicaStats(); st.ReplicaReads != before.ReplicaReads {
		t.Errorf("ReplicaStats = %+v after closing the replica's pool; want no more replica reads", st)
	}
}

// TestReplicaWithoutOption: without Options.Replica GetStale is Get, and
// its failures name get-stale.
func TestReplicaWithoutOption(t *testing.T) {
	f := newFixture(t, backends[0], Options{})
	ctx := context.Background()
	if f.store.MaxStaleness() != 0 {
		t.Errorf("MaxStaleness without a replica = %v", f.store.MaxStaleness())
	}
	if err := f.store.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := f.store.GetStale(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("GetStale = %q, %v", v, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := f.store.GetStale(cctx, "k")
	var se *storage.Error
	if !errors.As(err, &se) || se.Op != "get-stale" {
		t.Errorf("GetStale with a cancelled context: %v; want *storage.Error with Op get-stale", err)
	}
}

func TestReplicaOptions(t *testing.T) {
	pool := openReplicaPool(t, "postgres://nobody@127.0.0.1:1/none") // never connected
	bad := map[string]*Replica{
		"nil DB":                  {},
		"negative bound":          {DB: pool, MaxStaleness: -time.Second},
		"negative interval":       {DB: pool, CheckInterval: -time.Second},
		"interval of the bound":   {DB: pool, MaxStaleness: time.Second, CheckInterval: time.Second},
		"interval over the bound": {DB: pool, MaxStaleness: time.Second, CheckInterval: 2 * time.Second},
	}
	for name, r := range bad {
		if _, err := (Options{Replica: r}).withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o, err := (Options{Replica: &Replica{DB: pool}}).withDefaults()
	if err != nil || o.Replica.MaxStaleness != DefaultMaxStaleness || o.Replica.CheckInterval != DefaultMaxStaleness/4 {
		t.Errorf("defaults: %+v, %v", o.Replica, err)
	}
	db, _ := openSQLite(t, "")
	if _, err := New(db, Options{Replica: &Replica{DB: pool}}); err == nil {
		t.Error("New accepted a Replica on SQLite")
	}
}

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]uint64{"0/0": 0, "0/3000028": 0x3000028, "16/B374D848": 0x16_B374D848, "FFFFFFFF/FFFFFFFF": 1<<64 - 1} {
		if got, err := parseLSN(in); err != nil || got != want {
			t.Errorf("parseLSN(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "x/0", "0/x", "1/2/3", "100000000/0"} {
		if _, err := parseLSN(in); err == nil {
			t.Errorf("parseLSN(%q) accepted", in)
		}
	}
}
