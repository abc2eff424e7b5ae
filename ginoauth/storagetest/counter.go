package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The checks of the optional storage.Counter capability (the Counter/
// subtests of Run), skipped when the store does not implement it.
var counterChecks = []struct {
	name string
	fn   func(*testing.T, Harness)
}{
	{"Counter/Basic", testCounterBasic},
	{"Counter/TTL", testCounterTTL},
	{"Counter/Concurrent", testCounterConcurrent},
	{"Counter/AcrossHandles", testCounterAcrossHandles},
	{"Counter/Context", testCounterContext},
	{"Counter/Faults", testCounterFaults},
}

func counter(t *testing.T, s storage.Store) storage.Counter {
	t.Helper()
	c, ok := s.(storage.Counter)
	if !ok {
		t.Skipf("%T does not implement storage.Counter", s)
	}
	return c
}

// mustIncr calls Incr and fails t unless it returns want.
func mustIncr(t *testing.T, c storage.Counter, key string, by int64, ttl time.Duration, want int64) {
	t.Helper()
	got, err := c.Incr(ctxFor(t), key, by, ttl)
	if err != nil {
		t.Fatalf("Incr(%q, %d, ttl %v): %v", shorten(key), by, ttl, err)
	}
	if got != want {
		t.Errorf("Incr(%q, %d, ttl %v) = %d, want %d", shorten(key), by, ttl, got, want)
	}
}

func testCounterBasic(t *testing.T, h Harness) {
	s := h.New(t)
	c := counter(t, s)
	ctx := ctxFor(t)
	p := prefix(t)

	mustIncr(t, c, p+"a", 1, time.Hour, 1) // a new counter starts at 0
	mustIncr(t, c, p+"a", 1, time.Hour, 2)
	mustIncr(t, c, p+"a", 5, time.Hour, 7) // by is added, not 1
	mustIncr(t, c, p+"b", 3, time.Hour, 3) // another key: its own counter
	mustIncr(t, c, p+"a", 1, time.Hour, 8)

	// Bad arguments are errors and change nothing.
	for _, bad := range []struct {
		what string
		by   int64
		ttl  time.Duration
	}{
		{"by 0", 0, time.Hour}, {"negative by", -3, time.Hour},
		{"ttl 0", 1, 0}, {"negative ttl", 1, -time.Second},
	} {
		n, err := c.Incr(ctx, p+"a", bad.by, bad.ttl)
		wantFailure(t, "Incr with "+bad.what, err)
		if err == nil {
			t.Errorf("Incr with %s returned %d and no error", bad.what, n)
		}
		_, err = c.Incr(ctx, p+"fresh-"+bad.what, bad.by, bad.ttl)
		wantFailure(t, "Incr of a new counter with "+bad.what, err)
	}
	mustIncr(t, c, p+"a", 1, time.Hour, 9)
	mustIncr(t, c, p+"fresh-ttl 0", 1, time.Hour, 1) // the refused calls created nothing

	// Look-alike keys are distinct counters.
	odd := oddKeys(p)
	for i, k := range odd {
		mustIncr(t, c, k, int64(i+1), time.Hour, int64(i+1))
	}
	for i, k := range odd {
		mustIncr(t, c, k, 1, time.Hour, int64(i+2))
	}

	// Invalid keys are refused, not stored under a mangled form.
	invalid := invalidKeys(t, p)
	for name, k := range invalid {
		_, err := c.Incr(ctx, k, 1, time.Hour)
		wantFailure(t, "Incr with an invalid key ("+name+")", err)
	}
	mustIncr(t, c, p+"nul", 1, time.Hour, 1)
	mustIncr(t, c, p+"nulend", 1, time.Hour, 1)
	mustIncr(t, c, invalid["too long"][:storage.MaxKeyLength], 1, time.Hour, 1)
}

// testCounterTTL: a counter expires ttl after its first increment, whatever
// the later increments ask for, and then starts again from 0. Its expiry is
// judged against an entry set with the same ttl just after the counter's
// first increment (Get never extends anything), so a slow or stalled run
// cannot make a wrong store pass.
func testCounterTTL(t *testing.T, h Harness) {
	s := h.New(t)
	c := counter(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	window, witness, long, slow := p+"window", p+"witness", p+"long", p+"slow"

	start := time.Now()
	mustIncr(t, c, window, 1, TTL, 1)
	mustSet(t, s, witness, []byte("x"), TTL) // expires after window does
	mustIncr(t, c, long, 1, time.Hour, 1)
	mustIncr(t, c, slow, 1, 5*TTL, 1)

	// Not early: still counting at half the ttl. A later increment asks
	// for a longer ttl, which must not move the expiry.
	time.Sleep(time.Until(start.Add(TTL / 2)))
	n2, err := c.Incr(ctx, window, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < TTL && n2 != 2 {
		t.Errorf("Incr at half the ttl = %d, want 2 (the counter expired early or lost its count)", n2)
	}
	mustIncr(t, c, window, 1, TTL, n2+1)

	// Once the witness has expired, so has the counter: the next Incr
	// starts it again from 0.
	deadline := start.Add(3 * TTL)
	for {
		_, err := s.Get(ctx, witness)
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Get(%q): %v", witness, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("an entry set with ttl %v is still there after %v", TTL, 3*TTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // stores may round ttls up a little
	n, err := c.Incr(ctx, window, 1, TTL)
	if err != nil {
		t.Fatalf("Incr after expiry: %v", err)
	}
	if n != 1 {
		t.Fatalf("a counter created with ttl %v still counts (%d, after %d) %v after its first increment: later increments extended it, it never expires, or it kept its count when it expired",
			TTL, n, n2+1, time.Since(start).Round(time.Millisecond))
	}
	// The restarted counter counts on; the long ones were never reset.
	mustIncr(t, c, window, 2, TTL, 3)
	mustIncr(t, c, long, 1, time.Hour, 2)
	if time.Since(start) < 5*TTL {
		mustIncr(t, c, slow, 1, 5*TTL, 2) // a counter expiring early would start again at 1
	} else {
		t.Logf("the run took %v: the counter with ttl %v was not checked", time.Since(start), 5*TTL)
	}
}

// testCounterConcurrent has workers on several handles increment one
// counter at once, as instances count one address's requests: every
// increment counts, and no two calls see the same value.
func testCounterConcurrent(t *testing.T, h Harness) {
	s := h.New(t)
	handles := []storage.Counter{counter(t, s)}
	if h.Reopen != nil {
		for range 2 {
			handles = append(handles, counter(t, h.Reopen(t, s)))
		}
	}
	ctx := ctxFor(t)
	key := prefix(t) + "hits"
	const workers, perWorker = 8, 25
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  []int64
		start = make(chan struct{})
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := handles[w%len(handles)]
			<-start
			for range perWorker {
				n, err := c.Incr(ctx, key, 1, time.Hour)
				if err != nil {
					t.Errorf("concurrent Incr: %v", err)
					return
				}
				mu.Lock()
				seen = append(seen, n)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
	for i, n := range seen {
		if n != int64(i+1) {
			t.Fatalf("%d concurrent increments returned %s: each value 1..%d should come back exactly once (lost or doubled updates)",
				len(seen), summary(seen), len(seen))
		}
	}
	for i, c := range handles {
		mustIncr(t, c, key, 1, time.Hour, int64(workers*perWorker+i+1))
	}
}

// summary shows the first values that break the sequence 1, 2, 3, ...
func summary(sorted []int64) string {
	for i, n := range sorted {
		if n != int64(i+1) {
			lo := max(i-2, 0)
			hi := min(i+3, len(sorted))
			return fmt.Sprintf("... %v ... (max %d)", sorted[lo:hi], sorted[len(sorted)-1])
		}
	}
	return fmt.Sprint(sorted)
}

// testCounterAcrossHandles: instances sharing the store share the counter.
func testCounterAcrossHandles(t *testing.T, h Harness) {
	a := h.New(t)
	ca := counter(t, a)
	cb := counter(t, reopen(t, h, a))
	key := prefix(t) + "shared"
	mustIncr(t, ca, key, 1, time.Hour, 1)
	mustIncr(t, cb, key, 1, time.Hour, 2)
	mustIncr(t, ca, key, 3, time.Hour, 5)
	mustIncr(t, cb, key, 1, time.Hour, 6)
}

func testCounterContext(t *testing.T, h Harness) {
	s := h.New(t)
	c := counter(t, s)
	key := prefix(t) + "ctx"
	mustIncr(t, c, key, 1, time.Hour, 1)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"canceled": canceled, "deadline exceeded": expired} {
		_, err := c.Incr(ctx, key, 1, time.Hour)
		wantFailure(t, "Incr with a "+name+" context", err)
	}
	mustIncr(t, c, key, 1, time.Hour, 2) // the failed calls counted nothing
}

func testCounterFaults(t *testing.T, h Harness) {
	if h.Break == nil {
		t.Skip("Harness.Break is nil: storage faults not checked")
	}
	s := h.New(t)
	c := counter(t, s)
	key := prefix(t) + "faults"
	mustIncr(t, c, key, 1, time.Hour, 1)
	h.Break(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.Incr(ctx, key, 1, time.Hour)
	if err == nil {
		t.Fatalf("Incr on a broken store = %d and no error, want a failure (a limit must not pass for a count)", n)
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Incr on a broken store: %v; a failure must not be reported as ErrNotFound", err)
	}
}
