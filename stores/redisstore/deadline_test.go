package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// deadlineClients are the clients an app may pass: built as the README
// shows (go-redis then ignores context deadlines), with
// ContextTimeoutEnabled, and a cluster client and a ring without it. The
// cluster client is told that the one server holds every slot, so that a
// server of the test's own can stall it.
var deadlineClients = []struct {
	name   string
	honour bool // the client itself honours context deadlines
	new    func(addr string) redis.UniversalClient
}{
	{"as in the README", false, func(addr string) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	}},
	{"ContextTimeoutEnabled", true, func(addr string) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	}},
	{"cluster client", false, func(addr string) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{
			ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
				return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: addr}}}}, nil
			},
		})
	}},
	{"ring", false, func(addr string) redis.UniversalClient {
		return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": addr}})
	}},
}

// TestDeadlineHolds: while Redis stalls (DEBUG SLEEP on a server of the
// test's own), every call returns its context's error at the context's
// deadline, whatever client the app passed, and nothing it started is
// left running once the server answers again (nothing at all, on a client
// that honours deadlines itself). Before the fix the calls on the clients
// without ContextTimeoutEnabled took as long as the stall.
func TestDeadlineHolds(t *testing.T) {
	const (
		stall    = 3 * time.Second
		deadline = 300 * time.Millisecond
		slack    = 700 * time.Millisecond // generous: the point is "not the stall"
	)
	for _, tc := range deadlineClients {
		t.Run(tc.name, func(t *testing.T) {
			srv := testdb.StartRedisServer(t)
			rdb := tc.new(srv.Addr)
			defer rdb.Close()
			s := newStore(t, rdb, "deadline:")
			ctx := context.Background()
			// Warm up: a pooled connection, the scripts loaded.
			if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Members(ctx, "set"); err != nil {
				t.Fatal(err)
			}

			resumed := srv.Sleep(stall)
			began := time.Now()
			ignore := goleak.IgnoreCurrent()
			check := func(op string, call func(context.Context) error) {
				t.Helper()
				ctx, cancel := context.WithTimeout(ctx, deadline)
				defer cancel()
				start := time.Now()
				err := call(ctx)
				took := time.Since(start)
				var se *storage.Error
				if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%s during a stall: %v (%T), want a *storage.Error wrapping context.DeadlineExceeded", op, err, err)
				}
				if took > deadline+slack {
					t.Errorf("%s during a %v stall took %v with a %v deadline", op, stall, took.Round(time.Millisecond), deadline)
				}
			}
			check("get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err })
			check("set", func(ctx context.Context) error { return s.Set(ctx, "k", []byte("w"), time.Minute) })
			check("members", func(ctx context.Context) error { _, err := s.Members(ctx, "set"); return err })
			if time.Since(began) > stall-500*time.Millisecond {
				t.Fatal("the checks outlasted the stall; they prove nothing")
			}
			if tc.honour {
				// Nothing may still be running while the server sleeps.
				goleak.VerifyNone(t, ignore)
			}
			<-resumed
			// Whatever was abandoned has finished once the server answers.
			goleak.VerifyNone(t, ignore)
			if v, err := s.Get(ctx, "k"); err != nil {
				t.Fatalf("after the stall: %q, %v", v, err)
			}
		})
	}
}
