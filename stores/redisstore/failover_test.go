package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// Fault tests of the lock lease across a failover, on a primary and a
// replica of the test's own (a Sentinel-style pair: the test promotes the
// replica itself). The same holds on Redis Cluster; internal/redisfailover
// measures it there under load.

// lockOnce takes the lease or reports why not within 2s (a loaded machine
// may need a while for a free lease; a held one is not taken that fast:
// its TTL is a minute).
func lockOnce(t *testing.T, s *redisstore.Store) (storage.Unlock, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.Lock(ctx, "refresh", time.Minute)
}

// TestLeaseSurvivesFailover: a lease that Lock returned is on the replica,
// so killing the primary and promoting the replica keeps it, and a second
// instance cannot take it; once released, it can.
func TestLeaseSurvivesFailover(t *testing.T) {
	t.Parallel()
	primary, replica := testdb.StartRedisPair(t)
	a := newStore(t, primary.Client(), "lease:")
	unlock, err := lockOnce(t, a)
	if err != nil {
		t.Fatal(err)
	}
	primary.Kill()
	replica.Promote()
	b := newStore(t, replica.Client(), "lease:")
	if second, err := lockOnce(t, b); err == nil {
		_ = second(context.Background())
		t.Fatal("a second instance took the lease after the failover")
	}
	_ = unlock // its primary is gone; the promoted replica's copy lapses with its TTL
}

// TestLaggingReplica: while the replica cannot receive a write (frozen,
// behind a 64 MB write that no socket buffer holds, so that what follows
// waits in the primary's memory), a lease or a Set waits AckTimeout and
// fails with ErrNotReplicated, a storage failure (503); Lock gives the
// lease back. Had either been reported done, killing the primary then
// would lose it: the unacknowledged cases show that this fault injection
// does lose it (a second instance takes the lease on the promoted replica;
// the value is not there).
func TestLaggingReplica(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name string
		// write does the write on the primary's store; survived checks it
		// on the promoted replica's.
		write    func(s *redisstore.Store) error
		survived func(t *testing.T, s *redisstore.Store) bool
	}{
		{"lease", func(s *redisstore.Store) error {
			_, err := lockOnce(t, s)
			return err
		}, func(t *testing.T, s *redisstore.Store) bool {
			unlock, err := lockOnce(t, s)
			if err == nil {
				_ = unlock(context.Background())
			}
			return err != nil // still held by the first instance
		}},
		{"set", func(s *redisstore.Store) error {
			return s.Set(context.Background(), "k", []byte("v"), time.Minute)
		}, func(t *testing.T, s *redisstore.Store) bool {
			v, err := s.Get(context.Background(), "k")
			return err == nil && string(v) == "v"
		}},
	}
	for _, op := range ops {
		for _, acked := range []bool{true, false} {
			name := op.name + map[bool]string{true: ", acknowledged", false: ", unacknowledged"}[acked]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				primary, replica := testdb.StartRedisPair(t)
				prdb := primary.Client()
				opts := redisstore.Options{Prefix: "lag:", AckTimeout: 200 * time.Millisecond, Writes: redisstore.WritesAcked}
				if !acked {
					opts.Writes, opts.UnreplicatedLeases = redisstore.WritesUnacked, true
				}
				a, err := redisstore.New(prdb, opts)
				if err != nil {
					t.Fatal(err)
				}
				replica.Stop()
				defer replica.Cont()
				if err := prdb.Set(context.Background(), "filler", strings.Repeat("x", 64<<20), 0).Err(); err != nil {
					t.Fatal(err)
				}

				began := time.Now()
				errA := op.write(a)
				took := time.Since(began)

				primary.Kill()
				replica.Cont()
				replica.Promote()
				survived := op.survived(t, newStore(t, replica.Client(), "lag:"))

				if !acked {
					if errA != nil || survived {
						t.Fatalf("unacknowledged: the write (%v) should have been reported done and then lost in the failover (the fault this guards against); survived: %v", errA, survived)
					}
					return
				}
				if errA == nil {
					t.Fatalf("the %s was reported done though no replica acknowledged it (survived the failover: %v)", op.name, survived)
				}
				var se *storage.Error
				if !errors.As(errA, &se) || !errors.Is(errA, redisstore.ErrNotReplicated) {
					t.Errorf("%s with a lagging replica: %v, want a *storage.Error wrapping ErrNotReplicated", op.name, errA)
				}
				if took > 200*time.Millisecond+2*time.Second {
					t.Errorf("%s with a lagging replica took %v with a 200ms AckTimeout", op.name, took)
				}
				if op.name == "lease" && survived {
					t.Error("the lease Lock failed on is still held: it was not given back")
				}
			})
		}
	}
}

// TestAckedWrites: with Writes: WritesAcked, every write waits for the
// replica (it is there as soon as the write returns), and while the
// replica is frozen every write fails with ErrNotReplicated and reads go
// on; once it is back, writes succeed again.
func TestAckedWrites(t *testing.T) {
	t.Parallel()
	primary, replica := testdb.StartRedisPair(t)
	// A long AckTimeout while the replica is up (a loaded machine must not
	// fail it), a short one once it is frozen.
	s, err := redisstore.New(primary.Client(), redisstore.Options{Prefix: "acked:", Writes: redisstore.WritesAcked, AckTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	frozen, err := redisstore.New(primary.Client(), redisstore.Options{Prefix: "acked:", Writes: redisstore.WritesAcked, AckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rrdb := replica.Client()
	writes := []struct {
		name string
		do   func(s *redisstore.Store) error
	}{
		{"set", func(s *redisstore.Store) error { return s.Set(ctx, "k", []byte("v"), time.Minute) }},
		{"set without ttl", func(s *redisstore.Store) error { return s.Set(ctx, "forever", []byte("v"), 0) }},
		{"add-member", func(s *redisstore.Store) error { return s.AddMember(ctx, "set", "m", time.Minute) }},
		{"take", func(s *redisstore.Store) error { _, err := s.Take(ctx, "forever"); return err }},
		{"remove-member", func(s *redisstore.Store) error { return s.RemoveMember(ctx, "set", "m") }},
		{"delete", func(s *redisstore.Store) error { return s.Delete(ctx, "k") }},
		{"lock", func(s *redisstore.Store) error {
			unlock, err := s.Lock(ctx, "other", time.Minute)
			if err != nil {
				return err
			}
			return unlock(ctx)
		}},
	}
	for _, w := range writes {
		if err := w.do(s); err != nil {
			t.Fatalf("%s with the replica up: %v", w.name, err)
		}
	}
	// The replica has every write the moment it returned.
	if err := s.Set(ctx, "k", []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := rrdb.Get(ctx, "acked:kv:k").Result(); err != nil || v != "v2" {
		t.Fatalf("the replica right after an acknowledged Set: %q, %v", v, err)
	}
	if err := s.AddMember(ctx, "set", "m", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "forever", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "held", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "read", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}

	// A failed write may still be on the primary: the frozen loop's writes
	// happen there, and only their acknowledgement fails.
	replica.Stop()
	for _, w := range writes {
		began := time.Now()
		err := w.do(frozen)
		if !errors.Is(err, redisstore.ErrNotReplicated) {
			t.Errorf("%s with the replica frozen: %v, want ErrNotReplicated", w.name, err)
		}
		if took := time.Since(began); took > 200*time.Millisecond+2*time.Second {
			t.Errorf("%s with the replica frozen took %v with a 200ms AckTimeout", w.name, took)
		}
	}
	if err := unlock(ctx); !errors.Is(err, redisstore.ErrNotReplicated) {
		t.Errorf("unlock with the replica frozen: %v, want ErrNotReplicated", err)
	}
	if v, err := s.Get(ctx, "read"); err != nil || string(v) != "v" {
		t.Errorf("a read with the replica frozen: %q, %v", v, err)
	}
	if _, err := s.Members(ctx, "set"); err != nil {
		t.Errorf("a read with the replica frozen: %v", err)
	}
	replica.Cont()
	deadline := time.Now().Add(10 * time.Second)
	for frozen.Set(ctx, "k", []byte("v3"), time.Minute) != nil {
		if time.Now().After(deadline) {
			t.Fatal("writes still fail after the replica came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWritesMode: which writes wait, by client and option.
func TestWritesMode(t *testing.T) {
	addr := closedAddr(t)
	plain := redis.NewClient(&redis.Options{Addr: addr})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	failover := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{addr}})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}})
	universal := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MasterName: "m"})
	for _, c := range []redis.UniversalClient{plain, cluster, failover, ring, universal} {
		defer c.Close()
	}
	cases := []struct {
		name   string
		rdb    redis.UniversalClient
		writes redisstore.WriteAcks
		acked  bool
	}{
		{"plain client", plain, redisstore.WritesAuto, false},
		{"cluster client", cluster, redisstore.WritesAuto, true},
		{"failover client", failover, redisstore.WritesAuto, true},
		{"universal client with MasterName", universal, redisstore.WritesAuto, true},
		{"ring", ring, redisstore.WritesAuto, false},
		{"plain client, WritesAcked", plain, redisstore.WritesAcked, true},
		{"cluster client, WritesUnacked", cluster, redisstore.WritesUnacked, false},
	}
	for _, c := range cases {
		s, err := redisstore.New(c.rdb, redisstore.Options{Writes: c.writes})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := redisstore.AcksWrites(s); got != c.acked {
			t.Errorf("%s: writes acknowledged %v, want %v", c.name, got, c.acked)
		}
	}
	if s, _ := redisstore.New(cluster, redisstore.Options{}); redisstore.Detached(s) {
		t.Error("a client with ContextTimeoutEnabled is run detached")
	}
	if s, _ := redisstore.New(plain, redisstore.Options{}); !redisstore.Detached(s) {
		t.Error("a client without ContextTimeoutEnabled is not run detached")
	}
	if _, err := redisstore.New(plain, redisstore.Options{Writes: 7}); err == nil || !strings.Contains(err.Error(), "Writes") {
		t.Errorf("an unknown Writes: %v, want an error naming it", err)
	}
}

// TestSuiteReplicated runs the storage contract suite on a primary with a
// replica, every write acknowledged.
func TestSuiteReplicated(t *testing.T) {
	t.Parallel()
	primary, _ := testdb.StartRedisPair(t)
	var n atomic.Int64
	var clients sync.Map // *redisstore.Store -> *redis.Client
	open := func(t *testing.T, prefix string) *redisstore.Store {
		rdb := primary.Client()
		// A long AckTimeout: the suite checks the contract, not timing.
		s, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Writes: redisstore.WritesAcked, AckTimeout: 4 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		clients.Store(s, rdb)
		return s
	}
	prefixes := sync.Map{} // *redisstore.Store -> prefix
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			prefix := "suite" + strconv.FormatInt(n.Add(1), 10) + ":"
			s := open(t, prefix)
			prefixes.Store(s, prefix)
			return s
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			p, _ := prefixes.Load(s)
			r := open(t, p.(string))
			prefixes.Store(r, p)
			return r
		},
		Break: func(t *testing.T, s storage.Store) {
			c, _ := clients.Load(s)
			_ = c.(*redis.Client).Close()
		},
	})
}

// TestSingleServerLeases: a primary without replicas (a plain server) does
// not wait for acknowledgements: Lock takes one round trip's time, not
// AckTimeout.
func TestSingleServerLeases(t *testing.T) {
	srv := testdb.StartRedisServer(t)
	s, err := redisstore.New(srv.Client(), redisstore.Options{AckTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 20 {
		began := time.Now()
		unlock, err := s.Lock(ctx, "l", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took > time.Second {
			t.Fatalf("Lock on a server without replicas took %v: it waited for acknowledgements", took)
		}
		if err := unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAckTimeoutValidation: out-of-range values are refused with a
// clear error.
func TestAckTimeoutValidation(t *testing.T) {
	rdb := testdb.RedisClient(t)
	for _, d := range []time.Duration{-time.Second, time.Microsecond, 5 * time.Second} {
		if _, err := redisstore.New(rdb, redisstore.Options{AckTimeout: d}); err == nil || !strings.Contains(err.Error(), "AckTimeout") {
			t.Errorf("AckTimeout %v: %v, want an error naming the option", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Millisecond, 4 * time.Second} {
		if _, err := redisstore.New(rdb, redisstore.Options{AckTimeout: d}); err != nil {
			t.Errorf("AckTimeout %v refused: %v", d, err)
		}
	}
}
