package testdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// TestSizing measures what live sessions cost each store, for
// docs/scaling.md: real logins (the library, its indigo OAuth client and
// ginoauthtest's authorization server, as in the end-to-end tests), never
// logged out, then the rows and bytes they left behind, and the storage
// operations one login and one session check make. It is slow and prints a
// report, so it runs only when asked:
//
//	GINOAUTH_SIZING=1 GINOAUTH_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  GINOAUTH_TEST_REDIS_ADDR=127.0.0.1:6379 go test -count=1 -run '^TestSizing$' -v ./internal/testdb/
//
// GINOAUTH_SIZING_LOGINS sets the number of logins (default 2000, over
// half as many accounts: two devices each).
func TestSizing(t *testing.T) {
	if os.Getenv("GINOAUTH_SIZING") != "1" {
		t.Skip("set GINOAUTH_SIZING=1 to measure (slow; prints a report)")
	}
	logins := 2000
	if v := os.Getenv("GINOAUTH_SIZING_LOGINS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("GINOAUTH_SIZING_LOGINS=%q", v)
		}
		logins = n
	}
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sizing.db")
		s, err := sqlitestore.Open(path, sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		measureSizing(t, s, logins, func(t *testing.T) usage { return sqliteUsage(t, s) })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testdb.PostgresDSN(t)
		table := "sizing_" + randHex(4)
		s, err := postgresstore.Open(dsn, postgresstore.Options{Table: table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = s.DB().Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error
			_ = s.Close()
		})
		measureSizing(t, s, logins, func(t *testing.T) usage { return postgresUsage(t, s, table) })
	})
	t.Run("redis", func(t *testing.T) {
		prefix := testdb.RedisPrefix(t)
		rdb := testdb.RedisClient(t)
		s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		measureSizing(t, s, logins, func(t *testing.T) usage { return redisUsage(t, s, prefix) })
	})
}

// usage is what a store holds: bytes in all (as the server accounts them),
// and rows (entries and set members) by kind, the key's first segment.
type usage struct {
	bytes  int64
	detail string // how bytes was measured
	rows   map[string]int64
	kvSize map[string]int64 // key+value bytes by kind (entries only)
}

func measureSizing(t *testing.T, s storage.Store, logins int, measure func(t *testing.T) usage) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	accounts := max(1, logins/2)
	for i := range accounts {
		as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(handleOf(i))})
	}
	counted := &countingStore{Store: s, ops: map[string]int64{}}
	app := apptest.New(t, apptest.Options{
		Storage: counted, HTTPClient: as.HTTPClient(), Directory: as.Directory(), Consent: as.Consent,
		// Thousands of logins from 127.0.0.1: no login rate limits.
		Configure: func(c *ginoauth.Config) { c.RateLimits.Disabled = true },
	})
	// One warm-up login (pools, prepared statements), not counted.
	if r := app.NewBrowser().Login(handleOf(0), "/"); r.Status >= 400 {
		t.Fatalf("warm-up login: %d %s", r.Status, r.Body)
	}
	before := measure(t)
	counted.reset()
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if r := app.NewBrowser().Login(handleOf(i%accounts), "/"); r.Status >= 400 {
					t.Errorf("login %d: %d %s", i, r.Status, r.Body)
				}
			}
		}()
	}
	for i := 1; i < logins; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	loginOps := counted.snapshot()

	// One session check, counted alone.
	br := app.NewBrowser()
	if r := br.Login(handleOf(1), "/"); r.Status >= 400 {
		t.Fatalf("login: %d", r.Status)
	}
	counted.reset()
	if r := br.Get(app.Server.URL + "/api/whoami"); r.Status != 200 {
		t.Fatalf("whoami: %d %s", r.Status, r.Body)
	}
	checkOps := counted.snapshot()

	// The sessions measured: the logins after the warm-up, and the
	// check's.
	n := int64(logins)
	after := measure(t)
	t.Logf("%d logins over %d accounts in %v (8 at a time, authorization server in the same process)", logins-1, accounts, took.Round(time.Millisecond))
	t.Logf("bytes: %d -> %d = %.0f bytes per session (%s)", before.bytes, after.bytes, float64(after.bytes-before.bytes)/float64(n), after.detail)
	var kinds []string
	for k := range after.rows {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var totalRows int64
	for _, k := range kinds {
		d := after.rows[k] - before.rows[k]
		totalRows += d
		line := fmt.Sprintf("rows of kind %-12q %+d (%.2f per session)", k, d, float64(d)/float64(n))
		if kv := after.kvSize[k] - before.kvSize[k]; kv > 0 && d > 0 {
			line += fmt.Sprintf(", key+value %.0f bytes each", float64(kv)/float64(d))
		}
		t.Log(line)
	}
	t.Logf("rows per session: %.2f", float64(totalRows)/float64(n))
	t.Logf("storage operations per login: %s", fmtOps(loginOps, int64(logins-1)))
	t.Logf("storage operations per session check: %s", fmtOps(checkOps, 1))
}

func handleOf(i int) string { return fmt.Sprintf("user%d.test", i) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func fmtOps(ops map[string]int64, n int64) string {
	var names []string
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(ops[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// kind is a key's first segment ("sess", "acct", ...), the set name's for
// members.
func kind(key string) string {
	k, _, _ := strings.Cut(key, ":")
	return k
}

func sqliteUsage(t *testing.T, s *gormstore.Store) usage {
	t.Helper()
	db := s.DB()
	// Steady state: deleted rows' pages reused, WAL folded in.
	for _, q := range []string{`PRAGMA wal_checkpoint(TRUNCATE)`, `VACUUM`, `PRAGMA wal_checkpoint(TRUNCATE)`} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	var pages, size int64
	if err := db.Raw(`PRAGMA page_count`).Scan(&pages).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Raw(`PRAGMA page_size`).Scan(&size).Error; err != nil {
		t.Fatal(err)
	}
	u := sqlRows(t, s, gormstore.DefaultTable)
	u.bytes, u.detail = pages*size, "database file after VACUUM: page_count * page_size"
	return u
}

func postgresUsage(t *testing.T, s *gormstore.Store, table string) usage {
	t.Helper()
	db := s.DB()
	tables := []string{table, table + "_sets", table + "_locks"}
	for _, tb := range tables {
		if err := db.Exec(`VACUUM FULL "` + tb + `"`).Error; err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, tb := range tables {
		var n int64
		if err := db.Raw(`SELECT pg_total_relation_size(?::regclass)`, `"`+tb+`"`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		total += n
	}
	u := sqlRows(t, s, table)
	u.bytes, u.detail = total, "pg_total_relation_size of the three tables (heap, indexes, TOAST) after VACUUM FULL"
	return u
}

func sqlRows(t *testing.T, s *gormstore.Store, table string) usage {
	t.Helper()
	u := usage{rows: map[string]int64{}, kvSize: map[string]int64{}}
	type row struct {
		Kind  string
		N     int64
		Bytes int64
	}
	var rows []row
	q := `SELECT substr("key", 1, instr("key", ':') - 1) AS kind, COUNT(*) AS n, SUM(length("key") + length("value")) AS bytes FROM "` + table + `" GROUP BY 1`
	if s.DB().Name() == gormstore.DialectPostgres {
		q = `SELECT split_part("key", ':', 1) AS kind, COUNT(*) AS n, SUM(octet_length("key") + octet_length("value")) AS bytes FROM "` + table + `" GROUP BY 1`
	}
	if err := s.DB().Raw(q).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		u.rows[r.Kind] += r.N
		u.kvSize[r.Kind] += r.Bytes
	}
	var members []row
	mq := `SELECT substr("set_name", 1, instr("set_name", ':') - 1) AS kind, COUNT(*) AS n FROM "` + table + `_sets" GROUP BY 1`
	if s.DB().Name() == gormstore.DialectPostgres {
		mq = `SELECT split_part("set_name", ':', 1) AS kind, COUNT(*) AS n FROM "` + table + `_sets" GROUP BY 1`
	}
	if err := s.DB().Raw(mq).Scan(&members).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range members {
		u.rows[r.Kind+" member"] += r.N
	}
	return u
}

func redisUsage(t *testing.T, s *redisstore.Store, prefix string) usage {
	t.Helper()
	ctx := context.Background()
	rdb := testdb.RedisClient(t)
	u := usage{rows: map[string]int64{}, kvSize: map[string]int64{}, detail: "sum of MEMORY USAGE of every key under the prefix (SAMPLES 0)"}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		mem, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		u.bytes += mem
		rest := strings.TrimPrefix(key, prefix)
		switch {
		case strings.HasPrefix(rest, "kv:"):
			k := kind(strings.TrimPrefix(rest, "kv:"))
			u.rows[k]++
			if v, err := rdb.StrLen(ctx, key).Result(); err == nil {
				u.kvSize[k] += v + int64(len(strings.TrimPrefix(rest, "kv:")))
			}
		case strings.HasPrefix(rest, "set:"):
			n, err := rdb.ZCard(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			u.rows[kind(strings.TrimPrefix(rest, "set:"))+" member"] += n
		default:
			u.rows["other"]++
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	_ = s
	return u
}

// countingStore counts the storage operations the library makes.
type countingStore struct {
	storage.Store
	mu  sync.Mutex
	ops map[string]int64
}

func (c *countingStore) count(op, key string) {
	c.mu.Lock()
	c.ops[op+" "+kind(key)]++
	c.mu.Unlock()
}

func (c *countingStore) reset() {
	c.mu.Lock()
	c.ops = map[string]int64{}
	c.mu.Unlock()
}

func (c *countingStore) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.ops))
	for k, v := range c.ops {
		out[k] = v
	}
	return out
}

func (c *countingStore) Get(ctx context.Context, k string) ([]byte, error) {
	c.count("get", k)
	return c.Store.Get(ctx, k)
}

func (c *countingStore) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.count("set", k)
	return c.Store.Set(ctx, k, v, ttl)
}

func (c *countingStore) Delete(ctx context.Context, k string) error {
	c.count("delete", k)
	return c.Store.Delete(ctx, k)
}

func (c *countingStore) Take(ctx context.Context, k string) ([]byte, error) {
	c.count("take", k)
	return c.Store.(storage.Taker).Take(ctx, k)
}

func (c *countingStore) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	c.count("lock", name)
	return c.Store.(storage.Locker).Lock(ctx, name, ttl)
}

func (c *countingStore) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	c.count("add-member", set)
	return c.Store.(storage.Indexer).AddMember(ctx, set, member, ttl)
}

func (c *countingStore) RemoveMember(ctx context.Context, set, member string) error {
	c.count("remove-member", set)
	return c.Store.(storage.Indexer).RemoveMember(ctx, set, member)
}

func (c *countingStore) Members(ctx context.Context, set string) ([]string, error) {
	c.count("members", set)
	return c.Store.(storage.Indexer).Members(ctx, set)
}
