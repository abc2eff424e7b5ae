package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// Fault tests of the lock lease across a failover, on a primary and a
// replica of the test's own (a Sentinel-style pair: the test promotes the
// replica itself). The same holds on Redis Cluster; internal/redisfailover
// measures it there under load.

// lockOnce takes the lease or reports why not within 300ms: another holder
// keeps it from being taken that fast.
func lockOnce(t *testing.T, s *redisstore.Store) (storage.Unlock, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
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

// TestLaggingReplicaFailsTheLock: while the replica cannot receive the
// lease (frozen, behind a 64 MB write that no socket buffer holds, so the
// lease waits in the primary's memory), Lock waits LeaseAckTimeout, gives
// the lease back and fails with ErrLeaseNotReplicated, a storage failure
// (503). Had it returned the lease, killing the primary then would lose it
// and let a second instance take it on the promoted replica: the
// UnreplicatedLeases case shows that this fault injection does lose it.
func TestLaggingReplicaFailsTheLock(t *testing.T) {
	t.Parallel()
	for _, unreplicated := range []bool{false, true} {
		name := map[bool]string{false: "default", true: "UnreplicatedLeases"}[unreplicated]
		t.Run(name, func(t *testing.T) {
			primary, replica := testdb.StartRedisPair(t)
			prdb := primary.Client()
			ctx := context.Background()
			a, err := redisstore.New(prdb, redisstore.Options{Prefix: "lease:", LeaseAckTimeout: 200 * time.Millisecond, UnreplicatedLeases: unreplicated})
			if err != nil {
				t.Fatal(err)
			}
			replica.Stop()
			defer replica.Cont()
			if err := prdb.Set(ctx, "filler", strings.Repeat("x", 64<<20), 0).Err(); err != nil {
				t.Fatal(err)
			}

			began := time.Now()
			unlockA, errA := lockOnce(t, a)
			took := time.Since(began)

			primary.Kill()
			replica.Cont()
			replica.Promote()
			b := newStore(t, replica.Client(), "lease:")
			unlockB, errB := lockOnce(t, b)
			if errB == nil {
				defer func() { _ = unlockB(ctx) }()
			}

			if unreplicated {
				if errA != nil || errB != nil {
					t.Fatalf("without the wait, both instances should have held the lease (the fault this guards against): A %v, B %v", errA, errB)
				}
				_ = unlockA
				return
			}
			if errA == nil {
				t.Fatalf("Lock returned a lease that no replica acknowledged (B's Lock after the failover: %v)", errB)
			}
			var se *storage.Error
			if !errors.As(errA, &se) || !errors.Is(errA, redisstore.ErrLeaseNotReplicated) {
				t.Errorf("Lock with a lagging replica: %v, want a *storage.Error wrapping ErrLeaseNotReplicated", errA)
			}
			if took > 200*time.Millisecond+500*time.Millisecond {
				t.Errorf("Lock with a lagging replica took %v with a 200ms LeaseAckTimeout", took)
			}
			if errB != nil {
				t.Errorf("after the failover the lease should be free (A gave it back): %v", errB)
			}
		})
	}
}

// TestSingleServerLeases: a primary without replicas (a plain server) does
// not wait for acknowledgements: Lock takes one round trip's time, not
// LeaseAckTimeout.
func TestSingleServerLeases(t *testing.T) {
	srv := testdb.StartRedisServer(t)
	s, err := redisstore.New(srv.Client(), redisstore.Options{LeaseAckTimeout: 4 * time.Second})
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

// TestLeaseAckTimeoutValidation: out-of-range values are refused with a
// clear error.
func TestLeaseAckTimeoutValidation(t *testing.T) {
	rdb := testdb.RedisClient(t)
	for _, d := range []time.Duration{-time.Second, time.Microsecond, 5 * time.Second} {
		if _, err := redisstore.New(rdb, redisstore.Options{LeaseAckTimeout: d}); err == nil || !strings.Contains(err.Error(), "LeaseAckTimeout") {
			t.Errorf("LeaseAckTimeout %v: %v, want an error naming the option", d, err)
		}
	}
	for _, d := range []time.Duration{0, time.Millisecond, 4 * time.Second} {
		if _, err := redisstore.New(rdb, redisstore.Options{LeaseAckTimeout: d}); err != nil {
			t.Errorf("LeaseAckTimeout %v refused: %v", d, err)
		}
	}
}
