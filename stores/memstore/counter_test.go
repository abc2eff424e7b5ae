package memstore

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSweepCounts: expired counters go with the same sweeps as entries, so
// counting many client addresses does not grow memory without bound.
func TestSweepCounts(t *testing.T) {
	ctx := context.Background()
	s := New()
	now := time.Now()
	s.now = func() time.Time { return now }
	for i := range 100 {
		if _, err := s.Incr(ctx, fmt.Sprint("addr", i), 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Incr(ctx, "long", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	for range sweepEvery {
		if _, err := s.Incr(ctx, "live", 1, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	left := len(s.counts)
	s.mu.Unlock()
	if left != 2 {
		t.Fatalf("%d counters after a sweep, want 2 (the expired ones removed)", left)
	}
	if n, err := s.Incr(ctx, "long", 1, time.Hour); err != nil || n != 2 {
		t.Fatalf("the live counter after a sweep: %d, %v", n, err)
	}
}
