package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// These tests use the real Redis server named by GINOAUTH_TEST_REDIS_ADDR
// (skipped when it is unset), each on a key prefix of its own whose keys
// are deleted afterwards.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t testing.TB, rdb redis.UniversalClient, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The storage contract suite: every check on a prefix of its own, Reopen a
// second client on that prefix (a second app instance), Break a closed
// client (a lost connection).
func TestSuite(t *testing.T) {
	t.Parallel()
	testdb.RedisAddr(t)
	type handle struct {
		prefix string
		rdb    *redis.Client
	}
	var handles sync.Map // *redisstore.Store -> handle
	open := func(t *testing.T, prefix string) storage.Store {
		rdb := testdb.RedisClient(t)
		s := newStore(t, rdb, prefix)
		handles.Store(s, handle{prefix, rdb})
		return s
	}
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store { return open(t, testdb.RedisPrefix(t)) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			h, _ := handles.Load(s)
			return open(t, h.(handle).prefix)
		},
		Break: func(t *testing.T, s storage.Store) {
			h, _ := handles.Load(s)
			_ = h.(handle).rdb.Close()
		},
	})
}

// TestSuiteCluster runs the suite on the Redis Cluster that
// GINOAUTH_TEST_REDIS_CLUSTER names (scripts/ci/redis-cluster.sh starts
// one; .ci/run does), to show that no operation needs two keys in one hash
// slot: with clients built with ContextTimeoutEnabled, and built as the
// README once showed, without it (each call then runs in a goroutine of its
// own to honour its deadline).
func TestSuiteCluster(t *testing.T) {
	t.Parallel()
	testdb.RedisClusterAddrs(t)
	for _, honour := range []bool{true, false} {
		name := map[bool]string{true: "ContextTimeoutEnabled", false: "without ContextTimeoutEnabled"}[honour]
		t.Run(name, func(t *testing.T) {
			prefix := testdb.RedisClusterPrefix(t)
			cluster := func(t *testing.T) *redis.ClusterClient {
				return testdb.RedisClusterClient(t, func(o *redis.ClusterOptions) { o.ContextTimeoutEnabled = honour })
			}
			var clients sync.Map // *redisstore.Store -> *redis.ClusterClient
			storagetest.Run(t, storagetest.Harness{
				New: func(t *testing.T) storage.Store {
					c := cluster(t)
					s := newStore(t, c, prefix)
					clients.Store(s, c)
					return s
				},
				Reopen: func(t *testing.T, _ storage.Store) storage.Store { return newStore(t, cluster(t), prefix) },
				Break: func(t *testing.T, s storage.Store) {
					c, _ := clients.Load(s)
					_ = c.(*redis.ClusterClient).Close()
				},
			})
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestOutageIsNotNotFound: with Redis unreachable, every operation fails
// with a *storage.Error naming it, and none says "not found" or "no
// members", which the library would take for a logged-out user. It needs
// no Redis server.
func TestOutageIsNotNotFound(t *testing.T) {
	// No retries: the point is the answer, not go-redis's patience.
	rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	defer rdb.Close()
	s := newStore(t, rdb, "")
	ctx := context.Background()
	check := func(op string, err error) {
		t.Helper()
		var se *storage.Error
		if !errors.As(err, &se) || se.Op != op {
			t.Errorf("%s: %v (%T), want a *storage.Error with Op %q", op, err, err, op)
		}
		if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: an outage reported as ErrNotFound", op)
		}
	}
	v, err := s.Get(ctx, "k")
	check("get", err)
	if v != nil {
		t.Errorf("Get returned %q", v)
	}
	check("set", s.Set(ctx, "k", []byte("v"), time.Minute))
	check("delete", s.Delete(ctx, "k"))
	_, err = s.Take(ctx, "k")
	check("take", err)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	unlock, err := s.Lock(lctx, "l", time.Minute)
	check("lock", err)
	if unlock != nil {
		t.Error("Lock returned an Unlock with its error")
	}
	check("add-member", s.AddMember(ctx, "set", "m", time.Minute))
	check("remove-member", s.RemoveMember(ctx, "set", "m"))
	got, err := s.Members(ctx, "set")
	check("members", err)
	if got != nil {
		t.Errorf("Members returned %q", got)
	}
}

// TestStalledServer: a server that stops answering (a blackholed network)
// gives failures once ctx ends, not "not found".
func TestStalledServer(t *testing.T) {
	p := testdb.NewProxy(t, testdb.RedisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	s := newStore(t, rdb, testdb.RedisPrefix(t))
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	defer p.Resume()
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if _, err := s.Get(short(), "k"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get on a stalled server: %v, want a failure", err)
	}
	if got, err := s.Members(short(), "set"); err == nil || got != nil {
		t.Errorf("Members on a stalled server: %q, %v, want a failure", got, err)
	}
}

// TestKeys checks the documented layout: the key names, Redis's own TTLs,
// and each set's sorted set scored by expiry, with the key expiring with
// its longest-lived member.
func TestKeys(t *testing.T) {
	rdb := testdb.RedisClient(t)
	prefix := testdb.RedisPrefix(t)
	s := newStore(t, rdb, prefix)
	ctx := context.Background()

	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, prefix+"kv:k").Result(); err != nil || got != "v" {
		t.Fatalf("raw entry: %q, %v", got, err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"kv:k").Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("entry TTL in Redis = %v, want about a minute", ttl)
	}
	if err := s.Set(ctx, "k", []byte("v2"), 0); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"kv:k").Val(); ttl != -1 {
		t.Errorf("entry TTL after a Set with ttl 0 = %v, want none (-1)", ttl)
	}
	if err := s.Set(ctx, "short", []byte("v"), 100*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"kv:short").Val(); ttl == -1 {
		t.Error("a sub-millisecond ttl was stored as no expiry")
	}

	unlock, err := s.Lock(ctx, "k", time.Minute) // named like an entry: another key
	if err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"lock:k").Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("lease TTL in Redis = %v, want about a minute", ttl)
	}
	if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v2" {
		t.Errorf("taking a lock touched the entry: %q, %v", v, err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+"lock:k").Val(); n != 0 {
		t.Error("Unlock left the lease behind")
	}

	set := prefix + "set:acct"
	before := time.Now()
	if err := s.AddMember(ctx, "acct", "short", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "acct", "long", time.Hour); err != nil {
		t.Fatal(err)
	}
	if typ := rdb.Type(ctx, set).Val(); typ != "zset" {
		t.Fatalf("set key %s is a %q, want a zset", set, typ)
	}
	score := rdb.ZScore(ctx, set, "long").Val()
	if want := float64(before.Add(time.Hour).UnixMilli()); math.Abs(score-want) > 5000 {
		t.Errorf("score of a member added with ttl 1h = %v, want its expiry in Unix ms (about %v)", score, want)
	}
	keyTTL := func() time.Duration { return rdb.PTTL(ctx, set).Val() }
	if ttl := keyTTL(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("set key TTL = %v, want its longest-lived member's (1h)", ttl)
	}
	if err := s.AddMember(ctx, "acct", "forever", 0); err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(rdb.ZScore(ctx, set, "forever").Val(), 1) {
		t.Error("a member with ttl 0 is not scored +inf")
	}
	if ttl := keyTTL(); ttl != -1 {
		t.Errorf("set key TTL with a member that never expires = %v, want none (-1)", ttl)
	}
	if err := s.RemoveMember(ctx, "acct", "forever"); err != nil {
		t.Fatal(err)
	}
	if ttl := keyTTL(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("set key TTL after its never-expiring member left = %v, want 1h again", ttl)
	}
	if err := s.AddMember(ctx, "acct", "long", time.Minute); err != nil { // renewed shorter
		t.Fatal(err)
	}
	if ttl := keyTTL(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Errorf("set key TTL after its longest member was renewed shorter = %v, want 1m", ttl)
	}
	for _, m := range []string{"short", "long"} {
		if err := s.RemoveMember(ctx, "acct", m); err != nil {
			t.Fatal(err)
		}
	}
	if n := rdb.Exists(ctx, set).Val(); n != 0 {
		t.Error("a set emptied by RemoveMember left its key behind")
	}
}

// TestExpiredMembersDropped: AddMember drops a set's expired members, and a
// set whose members have all expired disappears from Redis by itself.
func TestExpiredMembersDropped(t *testing.T) {
	rdb := testdb.RedisClient(t)
	prefix := testdb.RedisPrefix(t)
	s := newStore(t, rdb, prefix)
	ctx := context.Background()
	for _, m := range []string{"a", "b", "c"} {
		if err := s.AddMember(ctx, "busy", m, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := s.AddMember(ctx, "abandoned", m, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := s.AddMember(ctx, "busy", "new", time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := rdb.ZCard(ctx, prefix+"set:busy").Val(); n != 1 {
		t.Errorf("busy set holds %d members after an AddMember, want 1 (the expired ones dropped)", n)
	}
	if n := rdb.Exists(ctx, prefix+"set:abandoned").Val(); n != 0 {
		t.Error("a set whose members all expired is still in Redis")
	}
}

// TestPrefixes: stores on different prefixes never meet; the zero Options
// use DefaultPrefix.
func TestPrefixes(t *testing.T) {
	rdb := testdb.RedisClient(t)
	prefix := testdb.RedisPrefix(t)
	ctx := context.Background()
	a := newStore(t, rdb, prefix+"a:")
	b := newStore(t, rdb, prefix+"b:")
	if err := a.Set(ctx, "k", []byte("from a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.AddMember(ctx, "set", "m", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("another prefix sees the key: %v", err)
	}
	if got, err := b.Members(ctx, "set"); err != nil || len(got) != 0 {
		t.Errorf("another prefix sees the set: %q, %v", got, err)
	}

	def := newStore(t, rdb, "")
	key := "ginoauth-test-default-prefix:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { rdb.Del(context.Background(), redisstore.DefaultPrefix+"kv:"+key) })
	if err := def.Set(ctx, key, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, redisstore.DefaultPrefix+"kv:"+key).Val(); n != 1 {
		t.Errorf("zero Options did not use DefaultPrefix %q", redisstore.DefaultPrefix)
	}
}

func TestNewNilClient(t *testing.T) {
	if _, err := redisstore.New(nil, redisstore.Options{}); err == nil {
		t.Error("New(nil) accepted")
	}
}

// TestLockValidation: a lease must have a length, and a name the key
// rules allow.
func TestLockValidation(t *testing.T) {
	s := newStore(t, testdb.RedisClient(t), testdb.RedisPrefix(t))
	ctx := context.Background()
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := s.Lock(ctx, "l", ttl); err == nil {
			t.Errorf("Lock with ttl %v accepted", ttl)
		}
	}
	if _, err := s.Lock(ctx, "", time.Second); err == nil {
		t.Error("Lock with an empty name accepted")
	}
}

// TestSilentWithLogger: normal use logs nothing, even with a Logger; the
// Logger only hears of leases that could not be given back.
func TestSilentWithLogger(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	lg := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := redisstore.New(testdb.RedisClient(t), redisstore.Options{Prefix: testdb.RedisPrefix(t), Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = s.Set(ctx, "k", []byte("v"), time.Minute)
	_, _ = s.Get(ctx, "missing")
	_ = s.AddMember(ctx, "set", "m", time.Minute)
	_, _ = s.Members(ctx, "set")
	if unlock, err := s.Lock(ctx, "l", time.Minute); err == nil {
		_ = unlock(ctx)
	}
	mu.Lock()
	defer mu.Unlock()
	if buf.Len() > 0 {
		t.Errorf("the store logged during normal use:\n%s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
