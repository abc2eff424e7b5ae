package memstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSuite(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store { return New() },
	})
}

// TestSweep checks that expired entries are dropped from memory by later
// writes, so a long-running process does not grow without bound.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	s := New()
	now := time.Now()
	s.now = func() time.Time { return now }
	for i := range 100 {
		if err := s.Set(ctx, fmt.Sprint("old", i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "forever", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	for i := range sweepEvery {
		if err := s.Set(ctx, "live", []byte(fmt.Sprint(i)), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got != 2 {
		t.Fatalf("Len after a sweep = %d, want 2 (the expired entries removed)", got)
	}
	if _, err := s.Get(ctx, "forever"); err != nil {
		t.Fatal(err)
	}
}

// TestSweepMembers: expired set members go with the same sweeps, and a set
// left with no member goes with them.
func TestSweepMembers(t *testing.T) {
	ctx := context.Background()
	s := New()
	now := time.Now()
	s.now = func() time.Time { return now }
	for i := range 100 {
		if err := s.AddMember(ctx, "account", fmt.Sprint("old", i), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.AddMember(ctx, "abandoned", fmt.Sprint("old", i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMember(ctx, "account", "forever", 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if got, err := s.Members(ctx, "account"); err != nil || len(got) != 1 || got[0] != "forever" {
		t.Fatalf("Members before any sweep = %q, %v; want only the live member", got, err)
	}
	for range sweepEvery {
		if err := s.AddMember(ctx, "live", "m", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.memberCount("account"); n != 1 {
		t.Errorf("account holds %d members after a sweep, want 1 (the expired ones removed)", n)
	}
	s.mu.Lock()
	_, kept := s.sets["abandoned"]
	s.mu.Unlock()
	if kept {
		t.Error("a set whose members all expired survived a sweep")
	}
}

// TestLockWakesWaiter checks that Unlock hands the lock over at once rather
// than when the released lease would have lapsed.
func TestLockWakesWaiter(t *testing.T) {
	ctx := context.Background()
	s := New()
	unlock, err := s.Lock(ctx, "l", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(ctx, "l", time.Hour)
		if err == nil {
			_ = u(ctx)
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waiter not woken by Unlock")
	}
}

func TestLockRejectsBadTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := New().Lock(context.Background(), "l", ttl); err == nil {
			t.Errorf("Lock with ttl %v: no error", ttl)
		}
	}
}

var (
	_ storage.Locker  = (*Store)(nil)
	_ storage.Indexer = (*Store)(nil)
)
