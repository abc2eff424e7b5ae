package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The checks of the optional storage.Swapper (compare-and-swap).

func swapper(t *testing.T, s storage.Store) storage.Swapper {
	t.Helper()
	sw, ok := s.(storage.Swapper)
	if !ok {
		t.Skipf("%T does not implement storage.Swapper", s)
	}
	return sw
}

func mustSwap(t *testing.T, sw storage.Swapper, key string, old, new []byte, ttl time.Duration, want bool) {
	t.Helper()
	got, err := sw.Swap(ctxFor(t), key, old, new, ttl)
	if err != nil {
		t.Fatalf("Swap(%q, %s -> %s): %v", key, show(old), show(new), err)
	}
	if got != want {
		t.Errorf("Swap(%q, %s -> %s) = %v, want %v", key, show(old), show(new), got, want)
	}
}

// testSwapBasic: a swap happens exactly when the live value equals old, and
// never writes a key that is missing, deleted or expired.
func testSwapBasic(t *testing.T, h Harness) {
	s := h.New(t)
	sw := swapper(t, s)
	ctx := ctxFor(t)
	p := prefix(t)

	mustSwap(t, sw, p+"never-set", []byte("a"), []byte("b"), time.Hour, false)
	wantNotFound(t, s, p+"never-set")

	mustSet(t, s, p+"k", []byte("v1"), time.Hour)
	mustSwap(t, sw, p+"k", []byte("other"), []byte("v2"), time.Hour, false)
	wantValue(t, s, p+"k", []byte("v1"))
	mustSwap(t, sw, p+"k", []byte("v1"), []byte("v2"), time.Hour, true)
	wantValue(t, s, p+"k", []byte("v2"))
	// A prefix or an extension of the value is not equal to it.
	mustSwap(t, sw, p+"k", []byte("v"), []byte("x"), time.Hour, false)
	mustSwap(t, sw, p+"k", []byte("v22"), []byte("x"), time.Hour, false)
	wantValue(t, s, p+"k", []byte("v2"))

	// A deleted key is never brought back.
	if err := s.Delete(ctx, p+"k"); err != nil {
		t.Fatal(err)
	}
	mustSwap(t, sw, p+"k", []byte("v2"), []byte("v3"), time.Hour, false)
	wantNotFound(t, s, p+"k")

	// Binary values compare byte for byte.
	bin := []byte{0, 1, 2, 0xff, 0}
	mustSet(t, s, p+"bin", bin, 0)
	mustSwap(t, sw, p+"bin", []byte{0, 1, 2, 0xff}, []byte("x"), 0, false)
	mustSwap(t, sw, p+"bin", bin, []byte{9, 0, 9}, 0, true)
	wantValue(t, s, p+"bin", []byte{9, 0, 9})

	// An invalid key is never written.
	if ok, err := sw.Swap(ctx, "", []byte("a"), []byte("b"), time.Hour); ok {
		t.Errorf("Swap of an empty key = true, %v; want false or an error", err)
	}
	mustSet(t, s, p+"neg", []byte("a"), time.Hour)
	if ok, err := sw.Swap(ctx, p+"neg", []byte("a"), []byte("b"), -time.Second); err == nil || ok {
		t.Errorf("Swap with a negative TTL = %v, %v; want an error, as Set gives", ok, err)
	}
	wantValue(t, s, p+"neg", []byte("a"))
}

// testSwapTTL: a swap sets the TTL as Set does (extending or clearing it),
// and an expired value cannot be swapped.
func testSwapTTL(t *testing.T, h Harness) {
	s := h.New(t)
	sw := swapper(t, s)
	p := prefix(t)

	// Extended: the value outlives its first TTL.
	mustSet(t, s, p+"slide", []byte("a"), TTL)
	mustSwap(t, sw, p+"slide", []byte("a"), []byte("b"), 3*TTL, true)
	// Shortened to expire: the value disappears with the new TTL.
	mustSet(t, s, p+"short", []byte("a"), time.Hour)
	mustSwap(t, sw, p+"short", []byte("a"), []byte("b"), TTL, true)
	// Cleared: 0 means no expiry.
	mustSet(t, s, p+"forever", []byte("a"), TTL)
	mustSwap(t, sw, p+"forever", []byte("a"), []byte("b"), 0, true)
	// Expired before the swap: nothing to swap.
	mustSet(t, s, p+"gone", []byte("a"), TTL)

	time.Sleep(TTL + 500*time.Millisecond)
	wantValue(t, s, p+"slide", []byte("b"))
	wantNotFound(t, s, p+"short")
	wantValue(t, s, p+"forever", []byte("b"))
	mustSwap(t, sw, p+"gone", []byte("a"), []byte("c"), time.Hour, false)
	wantNotFound(t, s, p+"gone")
}

// testSwapExactlyOnce races many swaps from the same old value (across two
// handles when Reopen is given): exactly one wins, and a racing Delete is
// never undone.
func testSwapExactlyOnce(t *testing.T, h Harness) {
	s := h.New(t)
	swapper(t, s)
	stores := []storage.Store{s}
	if h.Reopen != nil {
		stores = append(stores, h.Reopen(t, s))
	}
	ctx := ctxFor(t)
	p := prefix(t)
	const rounds, racers = 5, 20
	for r := range rounds {
		key := fmt.Sprint(p, "race-", r)
		mustSet(t, s, key, []byte("start"), time.Hour)
		var (
			winners atomic.Int32
			winner  atomic.Value
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sw := stores[i%len(stores)].(storage.Swapper)
				<-start
				mine := []byte(fmt.Sprint("racer-", i))
				ok, err := sw.Swap(ctx, key, []byte("start"), mine, time.Hour)
				if err != nil {
					t.Errorf("concurrent Swap: %v", err)
					return
				}
				if ok {
					winners.Add(1)
					winner.Store(mine)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := winners.Load(); n != 1 {
			t.Fatalf("round %d: %d swaps from one old value succeeded, want exactly 1", r, n)
		}
		wantValue(t, s, key, winner.Load().([]byte))
	}

	// A Delete racing swaps: once the Delete has landed, no swap brings
	// the key back.
	for r := range rounds {
		key := fmt.Sprint(p, "delete-race-", r)
		mustSet(t, s, key, []byte("v"), time.Hour)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var deleted atomic.Bool
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if i == racers/2 {
					if err := stores[i%len(stores)].Delete(ctx, key); err != nil {
						t.Errorf("Delete: %v", err)
					}
					deleted.Store(true)
					return
				}
				sw := stores[i%len(stores)].(storage.Swapper)
				if _, err := sw.Swap(ctx, key, []byte("v"), []byte("v"), time.Hour); err != nil {
					t.Errorf("Swap: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		// Every swap compared with "v" and wrote "v": if the key is still
		// there after the Delete, a swap ran after it and undid it.
		got, err := s.Get(ctx, key)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("round %d: after a Delete raced swaps, Get = %s, %v; a swap undid the Delete", r, show(got), err)
		}
	}
}

// testSwapFaults: a store that cannot answer reports a failure, never a
// plain "not swapped".
func testSwapFaults(t *testing.T, h Harness) {
	if h.Break == nil {
		t.Skip("Harness.Break is nil: faults not checked")
	}
	s := h.New(t)
	sw := swapper(t, s)
	p := prefix(t)
	mustSet(t, s, p+"k", []byte("v"), time.Hour)
	h.Break(t, s)
	ok, err := sw.Swap(ctxFor(t), p+"k", []byte("v"), []byte("w"), time.Hour)
	if ok {
		t.Error("Swap on a broken store reported a swap")
	}
	wantFailure(t, "Swap on a broken store", err)
}
