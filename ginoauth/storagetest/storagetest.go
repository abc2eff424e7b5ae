// Package storagetest checks that a storage.Store keeps the contract
// written on that interface. Run it from a test of your own store:
//
//	func TestMyStore(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness{
//			New: func(t *testing.T) storage.Store {
//				s := mystore.New(...)
//				t.Cleanup(func() { s.Close() })
//				return s
//			},
//		})
//	}
//
// The suite runs its checks as concurrent subtests (Harness.Parallel at a
// time), each on a store of its own from Harness.New, and uses a random key
// prefix per check, so stores that share one backend (one Redis database,
// one SQL table) are fine as long as nothing else deletes keys behind its
// back. Each check can fail: the package's own tests run the suite against
// stores with one deliberate bug each and require the right check to catch
// it. The optional capabilities storage.Taker, storage.Locker,
// storage.RenewableLocker, storage.Indexer, storage.Swapper and
// storage.StaleReader are checked when the store implements them (the
// Take/, Lock/ (Lock/Renew... for renewals), Index/, Swap/ and Stale/
// checks, and their parts of the others) and skipped (with a message)
// otherwise.
//
// The Stale/ checks make the replica lag through Harness.PauseReplica;
// without it they check only what holds whatever the lag. They wait
// MaxStaleness a few times, so give the store under test a short bound
// (they skip a store whose bound is over MaxCheckedStaleness).
//
// TTL, member-expiry and lock-lease checks use real time with 1-second
// TTLs, so a run takes a few seconds. Stores must resolve TTLs to at least
// 100ms.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Harness tells Run how to make stores.
type Harness struct {
	// New returns a ready store. Required. Register its cleanup with
	// t.Cleanup. Each check calls New once (from a parallel subtest).
	New func(t *testing.T) storage.Store

	// Reopen, if set, returns a second, independent handle on the same data
	// as s: another connection pool or client, as a second app instance
	// would have. Checks that Set/Take/Lock/AddMember hold across instances
	// use it and are skipped when it is nil.
	Reopen func(t *testing.T, s storage.Store) storage.Store

	// Break, if set, makes s's backend fail from now on (close its
	// connection pool, drop its table, stop its server). The fault check
	// then requires every operation to return an error that is not
	// storage.ErrNotFound. Skipped when nil.
	Break func(t *testing.T, s storage.Store)

	// Parallel is how many checks run at once (each on its own store).
	// 0 means DefaultParallel; 1 runs them one after another.
	Parallel int

	// PauseReplica, if set, stops the replica that s's StaleReader reads
	// from applying the primary's changes until resume is called (a
	// streaming replica with its replay paused), so that it lags further
	// and further behind. The store must notice the lag by itself. Checks
	// run concurrently and may share one replica, so pauses nest: the
	// replica stays paused until every pause has been resumed. The Stale/
	// checks use it; without it they cannot make the replica lag.
	PauseReplica func(t *testing.T, s storage.Store) (resume func())
}

// MaxCheckedStaleness is the longest StaleReader.MaxStaleness the Stale/
// checks accept: they wait for it several times.
const MaxCheckedStaleness = 5 * time.Second

// DefaultParallel is how many checks run at once by default.
const DefaultParallel = 8

// TTL is the time-to-live the expiry checks use.
const TTL = time.Second

// LargeValueSize is the size of the large value the suite stores (1 MiB).
const LargeValueSize = 1 << 20

// opTimeout bounds every single call, so a hung store fails instead of
// hanging the test binary.
const opTimeout = 30 * time.Second

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storagetest: Harness.New is nil")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Basic", testBasic},
		{"Overwrite", testOverwrite},
		{"TTL", testTTL},
		{"NegativeTTL", testNegativeTTL},
		{"ValueOwnership", testValueOwnership},
		{"EmptyValue", testEmptyValue},
		{"LargeValue", testLargeValue},
		{"OddKeys", testOddKeys},
		{"InvalidKeys", testInvalidKeys},
		{"ContextCanceled", testContextCanceled},
		{"Concurrent", testConcurrent},
		{"CrossHandle", testCrossHandle},
		{"Faults", testFaults},
		{"Take/Basic", testTakeBasic},
		{"Take/ExactlyOnce", testTakeExactlyOnce},
		{"Lock/MutualExclusion", testLockMutualExclusion},
		{"Lock/AcrossHandles", testLockAcrossHandles},
		{"Lock/IndependentNames", testLockIndependentNames},
		{"Lock/LeaseLapses", testLockLeaseLapses},
		{"Lock/StaleUnlock", testLockStaleUnlock},
		{"Lock/Context", testLockContext},
		{"Lock/CancelledWaiters", testLockCancelledWaiters},
		{"Index/Basic", testIndexBasic},
		{"Index/TTL", testIndexTTL},
		{"Index/Concurrent", testIndexConcurrent},
		{"Index/InvalidNames", testIndexInvalidNames},
		{"Index/AcrossHandles", testIndexAcrossHandles},
		{"Swap/Basic", testSwapBasic},
		{"Swap/TTL", testSwapTTL},
		{"Swap/ExactlyOnce", testSwapExactlyOnce},
		{"Swap/Faults", testSwapFaults},
		{"Stale/NewKeys", testStaleNewKeys},
		{"Stale/NotUndone", testStaleNotUndone},
		{"Stale/TTL", testStaleTTL},
	}
	tests = append(tests, counterChecks...)
	tests = append(tests, renewChecks...)
	// Most checks spend their time sleeping on TTLs and leases, so they run
	// concurrently through goroutines rather than t.Parallel, which -parallel
	// would cap at GOMAXPROCS.
	limit := h.Parallel
	if limit <= 0 {
		limit = DefaultParallel
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, tc := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
		}()
	}
	wg.Wait()
}

// ---- helpers ----

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// prefix returns a random key prefix, so checks never collide on a shared
// backend, nor with a previous run's leftovers.
func prefix(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "storagetest:" + hex.EncodeToString(b[:]) + ":"
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func taker(t *testing.T, s storage.Store) storage.Taker {
	t.Helper()
	tk, ok := s.(storage.Taker)
	if !ok {
		t.Skipf("%T does not implement storage.Taker", s)
	}
	return tk
}

func locker(t *testing.T, s storage.Store) storage.Locker {
	t.Helper()
	l, ok := s.(storage.Locker)
	if !ok {
		t.Skipf("%T does not implement storage.Locker", s)
	}
	return l
}

func indexer(t *testing.T, s storage.Store) storage.Indexer {
	t.Helper()
	ix, ok := s.(storage.Indexer)
	if !ok {
		t.Skipf("%T does not implement storage.Indexer", s)
	}
	return ix
}

func reopen(t *testing.T, h Harness, s storage.Store) storage.Store {
	t.Helper()
	if h.Reopen == nil {
		t.Skip("Harness.Reopen is nil: cross-handle behaviour not checked")
	}
	return h.Reopen(t, s)
}

func mustSet(t *testing.T, s storage.Store, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(ctxFor(t), key, val, ttl); err != nil {
		t.Fatalf("Set(%q, ttl %v): %v", key, ttl, err)
	}
}

// wantValue checks that Get(key) returns want.
func wantValue(t *testing.T, s storage.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Errorf("Get(%q): %v, want the value", key, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %s, want %s", key, show(got), show(want))
	}
}

// wantNotFound checks that Get(key) reports ErrNotFound and no value.
func wantNotFound(t *testing.T, s storage.Store, key string) {
	t.Helper()
	got, err := s.Get(ctxFor(t), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(%q) = %s, %v; want ErrNotFound", key, show(got), err)
		return
	}
	if got != nil {
		t.Errorf("Get(%q) returned ErrNotFound with a non-nil value %s", key, show(got))
	}
}

// wantFailure checks that err is a failure, not a nil and not ErrNotFound.
func wantFailure(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want a failure", what)
	} else if errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s: %v; a failure must not be reported as ErrNotFound", what, err)
	}
}

func show(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%d bytes %q...", len(b), b[:40])
	}
	return fmt.Sprintf("%q", b)
}

// ---- Storage ----

func testBasic(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)

	wantNotFound(t, s, p+"never-set")
	mustSet(t, s, p+"a", []byte("value a"), 0)
	mustSet(t, s, p+"b", []byte("value b"), time.Hour)
	wantValue(t, s, p+"a", []byte("value a"))
	wantValue(t, s, p+"b", []byte("value b"))

	if err := s.Delete(ctx, p+"a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, p+"a")
	wantValue(t, s, p+"b", []byte("value b")) // only the deleted key went

	if err := s.Delete(ctx, p+"a"); err != nil {
		t.Errorf("Delete of a deleted key: %v, want nil", err)
	}
	if err := s.Delete(ctx, p+"never-set"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
	// A key can be set again after deletion.
	mustSet(t, s, p+"a", []byte("again"), 0)
	wantValue(t, s, p+"a", []byte("again"))
}

func testOverwrite(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefix(t)
	mustSet(t, s, p+"k", []byte("a long first value"), 0)
	mustSet(t, s, p+"k", []byte("short"), 0) // no leftover bytes of the longer one
	wantValue(t, s, p+"k", []byte("short"))
	mustSet(t, s, p+"k", []byte("a longer third value than before"), time.Hour)
	wantValue(t, s, p+"k", []byte("a longer third value than before"))
	// A long value over a long value: nothing of the old one survives (a
	// write that patches bytes in place can tear).
	mustSet(t, s, p+"k", []byte("FOURTH VALUE, written whole, replacing all"), time.Hour)
	wantValue(t, s, p+"k", []byte("FOURTH VALUE, written whole, replacing all"))
	// TTL replacement is checked in TTL.
}

// testTTL checks expiry with one wait shared by every case.
func testTTL(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)
	tk, canTake := s.(storage.Taker)

	start := time.Now()
	mustSet(t, s, p+"expires", []byte("1"), TTL)
	mustSet(t, s, p+"forever", []byte("2"), 0)
	mustSet(t, s, p+"long", []byte("3"), time.Hour)
	// Overwrites replace the TTL both ways.
	mustSet(t, s, p+"was-ttl", []byte("old"), TTL)
	mustSet(t, s, p+"was-ttl", []byte("4"), 0)
	mustSet(t, s, p+"was-forever", []byte("old"), 0)
	mustSet(t, s, p+"was-forever", []byte("5"), TTL)
	mustSet(t, s, p+"reset", []byte("6"), TTL)
	mustSet(t, s, p+"take-expired", []byte("7"), TTL)
	mustSet(t, s, p+"delete-expired", []byte("8"), TTL)
	setDone := time.Now() // every TTL above ran out by setDone+TTL
	if setDone.Sub(start) > TTL/4 {
		t.Skipf("setting 8 keys took %v; too slow to check %v TTLs", setDone.Sub(start), TTL)
	}
	wantValue(t, s, p+"expires", []byte("1"))
	wantValue(t, s, p+"was-forever", []byte("5"))

	// Not early: still there at half the TTL.
	time.Sleep(time.Until(start.Add(TTL / 2)))
	wantValue(t, s, p+"expires", []byte("1"))
	wantValue(t, s, p+"was-forever", []byte("5"))
	// Setting again restarts the TTL.
	mustSet(t, s, p+"reset", []byte("6b"), time.Hour)

	// Gone within a second after the TTL (stores may round TTLs up a bit).
	time.Sleep(time.Until(setDone.Add(TTL + 50*time.Millisecond)))
	deadline := setDone.Add(2 * TTL)
	for _, k := range []string{"expires", "was-forever"} {
		for {
			_, err := s.Get(ctx, p+k)
			if errors.Is(err, storage.ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatalf("Get(%q) after expiry: %v", p+k, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("Get(%q) still returns the value %v after it was set with ttl %v", p+k, time.Since(start).Round(time.Millisecond), TTL)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wantNotFound(t, s, p+"expires")
	wantValue(t, s, p+"forever", []byte("2"))
	wantValue(t, s, p+"long", []byte("3"))
	wantValue(t, s, p+"was-ttl", []byte("4"))
	wantValue(t, s, p+"reset", []byte("6b"))
	if canTake {
		got, err := tk.Take(ctx, p+"take-expired")
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Take of an expired key = %s, %v; want ErrNotFound", show(got), err)
		}
	}
	if err := s.Delete(ctx, p+"delete-expired"); err != nil {
		t.Errorf("Delete of an expired key: %v", err)
	}
	// An expired key can be set again, and the new value has its own TTL.
	mustSet(t, s, p+"expires", []byte("new"), 0)
	wantValue(t, s, p+"expires", []byte("new"))
}

func testNegativeTTL(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefix(t)
	err := s.Set(ctxFor(t), p+"new", []byte("x"), -time.Second)
	wantFailure(t, "Set with negative ttl", err)
	wantNotFound(t, s, p+"new")

	mustSet(t, s, p+"old", []byte("kept"), 0)
	err = s.Set(ctxFor(t), p+"old", []byte("replaced"), -time.Nanosecond)
	wantFailure(t, "Set with negative ttl over an existing key", err)
	wantValue(t, s, p+"old", []byte("kept"))
}

func testValueOwnership(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)

	// Set must not keep the caller's slice.
	buf := []byte("original")
	mustSet(t, s, p+"k", buf, 0)
	copy(buf, "XXXXXXXX")
	wantValue(t, s, p+"k", []byte("original"))

	// Get's slice belongs to the caller.
	got, err := s.Get(ctx, p+"k")
	if err != nil {
		t.Fatal(err)
	}
	// Including the spare capacity, which must not be the store's memory.
	full := got[:cap(got)]
	for i := range full {
		full[i] = 'Y'
	}
	wantValue(t, s, p+"k", []byte("original"))

	// Two Gets do not share memory.
	a, err1 := s.Get(ctx, p+"k")
	b, err2 := s.Get(ctx, p+"k")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if len(a) > 0 && len(b) > 0 {
		a[0] = 'Z'
		if b[0] == 'Z' {
			t.Errorf("two Gets returned slices that share memory")
		}
	}

	if tk, ok := s.(storage.Taker); ok {
		mustSet(t, s, p+"t", []byte("taken"), 0)
		v, err := tk.Take(ctx, p+"t")
		if err != nil {
			t.Fatal(err)
		}
		copy(v, "XXXXX")
		mustSet(t, s, p+"t", []byte("again"), 0)
		wantValue(t, s, p+"t", []byte("again"))
	}
}

func testEmptyValue(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefix(t)
	for name, v := range map[string][]byte{"nil": nil, "empty": {}} {
		mustSet(t, s, p+name, v, 0)
		got, err := s.Get(ctxFor(t), p+name)
		if err != nil {
			t.Errorf("Get of a key set to a %s value: %v", name, err)
		} else if len(got) != 0 {
			t.Errorf("Get of a key set to a %s value = %s", name, show(got))
		}
	}
}

func testLargeValue(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)
	big := randomBytes(t, LargeValueSize+1)
	mustSet(t, s, p+"big", big, time.Hour)
	wantValue(t, s, p+"big", big)
	// Every byte value survives (binary safe, no text conversion).
	all := make([]byte, 256*4)
	for i := range all {
		all[i] = byte(i)
	}
	mustSet(t, s, p+"bytes", all, 0)
	wantValue(t, s, p+"bytes", all)

	if tk, ok := s.(storage.Taker); ok {
		got, err := tk.Take(ctx, p+"big")
		if err != nil {
			t.Fatalf("Take of a large value: %v", err)
		}
		if !bytes.Equal(got, big) {
			t.Errorf("Take of a large value returned %d bytes, not the %d stored", len(got), len(big))
		}
	}
}

// oddKeys are valid keys that naive stores mangle: SQL LIKE wildcards,
// quoting, case- or space-insensitive collations, Unicode normalisation,
// path separators, and the maximum length (in bytes, with multi-byte runes).
func oddKeys(p string) []string {
	keys := []string{
		"ключ-🔑-鍵", "café", "cafe\u0301", // NFC and NFD: distinct keys
		`quote'single`, `quote"double`, "back\\slash", "semi;colon--",
		"percent%", "percent", "under_score", "underXscore", "star*", "q?",
		"with space", "with space ", " with space", "tab\tnew\nline\r",
		"CaseKey", "casekey", "CASEKEY",
		"slash/dot/../x", "colon:colon", "{json}", "$dollar", "@at", "#hash",
		"\u200bzero-width", "\U0010FFFF",
	}
	for i := range keys {
		keys[i] = p + keys[i]
	}
	// Exactly MaxKeyLength bytes, ending in a 3-byte rune, and one that
	// differs from it only in the last rune.
	long := p + strings.Repeat("ü", (storage.MaxKeyLength-len(p)-3)/2)
	long += strings.Repeat("x", storage.MaxKeyLength-len(long)-3)
	keys = append(keys, long+"€", long+"₤")
	return keys
}

func testOddKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)
	keys := oddKeys(p)
	for i, k := range keys {
		if len(k) > storage.MaxKeyLength {
			t.Fatalf("bad test key of %d bytes", len(k))
		}
		if err := s.Set(ctx, k, []byte(fmt.Sprint("v", i)), 0); err != nil {
			t.Errorf("Set(%q): %v", k, err)
		}
	}
	for i, k := range keys {
		wantValue(t, s, k, []byte(fmt.Sprint("v", i)))
	}
	// Deleting one leaves its look-alikes alone.
	if err := s.Delete(ctx, p+"percent%"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, p+"under_score"); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if k == p+"percent%" || k == p+"under_score" {
			wantNotFound(t, s, k)
			continue
		}
		wantValue(t, s, k, []byte(fmt.Sprint("v", i)))
	}
	wantNotFound(t, s, p+"percentage")
	wantNotFound(t, s, p+"%")
	wantNotFound(t, s, p+"_")
}

// invalidKeys are keys (and set names and members) the contract refuses,
// each under the test's prefix p where it has room for one.
func invalidKeys(t *testing.T, p string) map[string]string {
	t.Helper()
	invalid := map[string]string{
		"empty":      "",
		"too long":   p + strings.Repeat("k", storage.MaxKeyLength-len(p)+1),
		"bad UTF-8":  p + "\xff\xfe",
		"NUL":        p + "nul\x00after",
		"NUL at end": p + "nulend\x00",
		"surrogate":  p + "\xed\xa0\x80",
	}
	for name, k := range invalid {
		if storage.ValidateKey(k) == nil {
			t.Fatalf("test key %q is valid", name)
		}
	}
	return invalid
}

func testInvalidKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxFor(t)
	p := prefix(t)
	invalid := invalidKeys(t, p)
	for name, k := range invalid {
		wantFailure(t, "Set with an invalid key ("+name+")", s.Set(ctx, k, []byte("x"), 0))
		if got, err := s.Get(ctx, k); err == nil || got != nil {
			t.Errorf("Get with an invalid key (%s) = %s, %v; want an error and no value", name, show(got), err)
		}
		if tk, ok := s.(storage.Taker); ok {
			if got, err := tk.Take(ctx, k); err == nil || got != nil {
				t.Errorf("Take with an invalid key (%s) = %s, %v; want an error and no value", name, show(got), err)
			}
		}
		_ = s.Delete(ctx, k) // either answer is fine; it must not panic
	}
	// A rejected key was not stored under a mangled form (truncated at NUL
	// or at the length limit).
	wantNotFound(t, s, p+"nul")
	wantNotFound(t, s, p+"nulend")
	wantNotFound(t, s, invalid["too long"][:storage.MaxKeyLength])
}

func testContextCanceled(t *testing.T, h Harness) {
	s := h.New(t)
	p := prefix(t)
	mustSet(t, s, p+"k", []byte("v"), 0)
	ix, canIndex := s.(storage.Indexer)
	if canIndex {
		mustAdd(t, ix, p+"set", "m", 0)
		defer wantMembers(t, ix, p+"set", "m") // the failed calls changed nothing
	}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"canceled": canceled, "deadline exceeded": expired} {
		_, err := s.Get(ctx, p+"k")
		wantFailure(t, "Get with a "+name+" context", err)
		_, err = s.Get(ctx, p+"missing")
		wantFailure(t, "Get of a missing key with a "+name+" context", err)
		wantFailure(t, "Set with a "+name+" context", s.Set(ctx, p+"k2", []byte("v"), 0))
		wantFailure(t, "Delete with a "+name+" context", s.Delete(ctx, p+"k"))
		if sr, ok := s.(storage.StaleReader); ok {
			_, err := sr.GetStale(ctx, p+"k")
			wantFailure(t, "GetStale with a "+name+" context", err)
			_, err = sr.GetStale(ctx, p+"missing")
			wantFailure(t, "GetStale of a missing key with a "+name+" context", err)
		}
		if tk, ok := s.(storage.Taker); ok {
			_, err := tk.Take(ctx, p+"k")
			wantFailure(t, "Take with a "+name+" context", err)
		}
		if ix, ok := s.(storage.Indexer); ok {
			wantFailure(t, "AddMember with a "+name+" context", ix.AddMember(ctx, p+"set", "new", 0))
			wantFailure(t, "RemoveMember with a "+name+" context", ix.RemoveMember(ctx, p+"set", "m"))
			got, err := ix.Members(ctx, p+"set")
			wantFailure(t, "Members with a "+name+" context", err)
			if got != nil {
				t.Errorf("Members with a %s context returned members %q along with its error", name, got)
			}
		}
	}
	// The failed Delete and Take did not remove the key.
	wantValue(t, s, p+"k", []byte("v"))
}

// testConcurrent mixes Set, Get and Delete on a few keys: no error other
// than ErrNotFound, and every value read is one that was written whole.
func testConcurrent(t *testing.T, h Harness) {
	s := h.New(t)
	stores := []storage.Store{s}
	if h.Reopen != nil {
		stores = append(stores, h.Reopen(t, s))
	}
	ctx := ctxFor(t)
	p := prefix(t)
	const marks = "abcdefgh" // one per worker
	const workers, ops, keys = len(marks), 40, 4
	value := func(w int) []byte { return bytes.Repeat([]byte{marks[w]}, 1000+w) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[w%len(stores)]
			for i := range ops {
				k := fmt.Sprint(p, "k", (w+i)%keys)
				var err error
				switch i % 4 {
				case 0, 2:
					err = st.Set(ctx, k, value(w), time.Hour)
				case 1:
					var got []byte
					got, err = st.Get(ctx, k)
					if err == nil {
						w2 := strings.IndexByte(marks, got[0])
						if w2 < 0 || !bytes.Equal(got, value(w2)) {
							t.Errorf("Get returned a value nobody wrote: %s", show(got))
						}
					}
				case 3:
					err = st.Delete(ctx, k)
				}
				if err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("concurrent op: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testCrossHandle(t *testing.T, h Harness) {
	a := h.New(t)
	b := reopen(t, h, a)
	ctx := ctxFor(t)
	p := prefix(t)
	mustSet(t, a, p+"k", []byte("from a"), time.Hour)
	wantValue(t, b, p+"k", []byte("from a"))
	mustSet(t, b, p+"k", []byte("from b"), 0)
	wantValue(t, a, p+"k", []byte("from b"))
	if err := b.Delete(ctx, p+"k"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, a, p+"k")
	if tk, ok := b.(storage.Taker); ok {
		mustSet(t, a, p+"t", []byte("take me"), 0)
		got, err := tk.Take(ctx, p+"t")
		if err != nil || string(got) != "take me" {
			t.Errorf("Take on the other handle = %s, %v", show(got), err)
		}
		wantNotFound(t, a, p+"t")
	}
}

func testFaults(t *testing.T, h Harness) {
	if h.Break == nil {
		t.Skip("Harness.Break is nil: storage faults not checked")
	}
	s := h.New(t)
	p := prefix(t)
	mustSet(t, s, p+"k", []byte("v"), 0)
	ix, canIndex := s.(storage.Indexer)
	if canIndex {
		mustAdd(t, ix, p+"set", "m", 0)
	}
	h.Break(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Get(ctx, p+"k")
	wantFailure(t, "Get of a stored key on a broken store", err)
	_, err = s.Get(ctx, p+"missing")
	wantFailure(t, "Get of a missing key on a broken store", err)
	wantFailure(t, "Set on a broken store", s.Set(ctx, p+"k", []byte("v"), 0))
	wantFailure(t, "Delete on a broken store", s.Delete(ctx, p+"k"))
	if sr, ok := s.(storage.StaleReader); ok {
		// A replica may still answer for a key it has; a miss there must
		// be checked against the primary, whose failure is a failure.
		_, err := sr.GetStale(ctx, p+"missing")
		wantFailure(t, "GetStale of a missing key on a broken store", err)
		if got, err := sr.GetStale(ctx, p+"k"); errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetStale of a stored key on a broken store = %s, %v; a failure must not be reported as ErrNotFound", show(got), err)
		}
	}
	if tk, ok := s.(storage.Taker); ok {
		_, err := tk.Take(ctx, p+"k")
		wantFailure(t, "Take on a broken store", err)
	}
	if l, ok := s.(storage.Locker); ok {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		unlock, err := l.Lock(lctx, p+"lock", time.Minute)
		wantFailure(t, "Lock on a broken store", err)
		if unlock != nil {
			_ = unlock(ctx)
		}
	}
	if canIndex {
		// An empty answer would tell the library that an account has no
		// sessions: a "log out everywhere" that silently ends nothing.
		for _, set := range []string{p + "set", p + "unknown-set"} {
			got, err := ix.Members(ctx, set)
			wantFailure(t, "Members on a broken store", err)
			if got != nil {
				t.Errorf("Members on a broken store returned %q along with its error", got)
			}
		}
		wantFailure(t, "AddMember on a broken store", ix.AddMember(ctx, p+"set", "new", time.Hour))
		wantFailure(t, "RemoveMember on a broken store", ix.RemoveMember(ctx, p+"set", "m"))
	}
}

// ---- Taker ----

func testTakeBasic(t *testing.T, h Harness) {
	s := h.New(t)
	tk := taker(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	mustSet(t, s, p+"k", []byte("once"), time.Hour)
	got, err := tk.Take(ctx, p+"k")
	if err != nil || string(got) != "once" {
		t.Fatalf("Take = %s, %v; want \"once\"", show(got), err)
	}
	wantNotFound(t, s, p+"k")
	got, err = tk.Take(ctx, p+"k")
	if !errors.Is(err, storage.ErrNotFound) || got != nil {
		t.Errorf("second Take = %s, %v; want ErrNotFound", show(got), err)
	}
	got, err = tk.Take(ctx, p+"never-set")
	if !errors.Is(err, storage.ErrNotFound) || got != nil {
		t.Errorf("Take of a missing key = %s, %v; want ErrNotFound", show(got), err)
	}
	// Take leaves other keys alone, and a taken key can be set again.
	mustSet(t, s, p+"k", []byte("twice"), 0)
	mustSet(t, s, p+"other", []byte("o"), 0)
	if got, err := tk.Take(ctx, p+"k"); err != nil || string(got) != "twice" {
		t.Errorf("Take after re-Set = %s, %v", show(got), err)
	}
	wantValue(t, s, p+"other", []byte("o"))
}

// testTakeExactlyOnce races many Takes of each key (across two handles when
// Reopen is given): exactly one gets the value, all others ErrNotFound.
func testTakeExactlyOnce(t *testing.T, h Harness) {
	s := h.New(t)
	taker(t, s)
	stores := []storage.Store{s}
	if h.Reopen != nil {
		stores = append(stores, h.Reopen(t, s))
	}
	ctx := ctxFor(t)
	p := prefix(t)
	const keys, takers = 5, 50
	for k := range keys {
		key := fmt.Sprint(p, "once-", k)
		want := []byte(fmt.Sprint("value-", k))
		mustSet(t, s, key, want, time.Hour)
		var (
			winners atomic.Int32
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		for i := range takers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := stores[i%len(stores)].(storage.Taker)
				<-start
				got, err := tk.Take(ctx, key)
				switch {
				case err == nil:
					winners.Add(1)
					if !bytes.Equal(got, want) {
						t.Errorf("Take returned %s, want %s", show(got), show(want))
					}
				case errors.Is(err, storage.ErrNotFound):
				default:
					t.Errorf("concurrent Take: %v (losers must get ErrNotFound)", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := winners.Load(); n != 1 {
			t.Fatalf("%d concurrent Takes of one key: %d got the value, want exactly 1", takers, n)
		}
		wantNotFound(t, s, key)
	}
}

// ---- Locker ----

// lockCounter has workers increment a counter inside the lock with a
// deliberate pause between read and write: without mutual exclusion,
// increments are lost and two holders overlap. Atomics are used for the
// counter itself only so the race detector, which cannot see a lock held
// through a database, stays quiet; the read-pause-write is still unsafe
// without the lock.
func lockCounter(t *testing.T, lockers []storage.Locker, name string) {
	ctx := ctxFor(t)
	const workers, iters = 8, 5
	var (
		counter, inside, overlaps atomic.Int64
		wg                        sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := lockers[w%len(lockers)]
			for range iters {
				unlock, err := l.Lock(ctx, name, 10*time.Second)
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				v := counter.Load()
				time.Sleep(time.Millisecond)
				counter.Store(v + 1)
				inside.Add(-1)
				if err := unlock(ctx); err != nil {
					t.Errorf("Unlock: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if got := counter.Load(); got != workers*iters {
		t.Errorf("counter = %d after %d locked increments: the lock did not exclude", got, workers*iters)
	}
	if n := overlaps.Load(); n > 0 {
		t.Errorf("%d times two holders were inside the lock at once", n)
	}
}

func testLockMutualExclusion(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	lockCounter(t, []storage.Locker{l}, prefix(t)+"counter")
}

func testLockAcrossHandles(t *testing.T, h Harness) {
	a := h.New(t)
	la := locker(t, a)
	b := reopen(t, h, a)
	lockCounter(t, []storage.Locker{la, locker(t, b)}, prefix(t)+"counter")
}

func testLockIndependentNames(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	unlockA, err := l.Lock(ctx, p+"a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unlockA(ctx) }()
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	unlockB, err := l.Lock(bctx, p+"b", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock of another name while the first is held: %v", err)
	}
	if err := unlockB(ctx); err != nil {
		t.Fatal(err)
	}
	// A released lock can be taken again at once.
	if err := unlockA(ctx); err != nil {
		t.Fatal(err)
	}
	actx, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	unlockA2, err := l.Lock(actx, p+"a", 10*time.Second)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	_ = unlockA2(ctx)
	// Unlock twice is harmless.
	if err := unlockA2(ctx); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
}

// testLockLeaseLapses: a holder that never unlocks blocks others for about
// its ttl, not less and not forever.
func testLockLeaseLapses(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "lease"
	start := time.Now()
	if _, err := l.Lock(ctx, name, TTL); err != nil { // never unlocked: a crashed holder
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*TTL)
	defer cancel()
	unlock, err := l.Lock(wctx, name, 10*time.Second)
	waited := time.Since(start)
	if err != nil {
		t.Fatalf("Lock after the holder's %v lease: %v (waited %v)", TTL, err, waited)
	}
	defer func() { _ = unlock(ctx) }()
	if waited < TTL/2 {
		t.Errorf("second Lock succeeded after %v, while the first lease (%v) was still held", waited, TTL)
	}
}

// testLockStaleUnlock: once a lease lapsed and another caller took the lock,
// the first holder's Unlock must not release it.
func testLockStaleUnlock(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "stale"
	staleUnlock, err := l.Lock(ctx, name, TTL)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*TTL)
	defer cancel()
	unlockB, err := l.Lock(wctx, name, 30*time.Second)
	if err != nil {
		t.Fatalf("Lock after the first lease lapsed: %v", err)
	}
	_ = staleUnlock(ctx) // an error is acceptable; releasing B's lock is not

	cctx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if unlockC, err := l.Lock(cctx, name, time.Second); err == nil {
		_ = unlockC(ctx)
		t.Fatal("a stale Unlock released the current holder's lock: a third caller got it")
	}
	if err := unlockB(ctx); err != nil {
		t.Fatal(err)
	}
	dctx, cancel3 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel3()
	unlockD, err := l.Lock(dctx, name, time.Second)
	if err != nil {
		t.Fatalf("Lock after the holder's Unlock: %v", err)
	}
	_ = unlockD(ctx)
}

func testLockContext(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "ctx"
	unlock, err := l.Lock(ctx, name, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unlock(ctx) }()

	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	u2, err := l.Lock(wctx, name, time.Second)
	if err == nil {
		_ = u2(ctx)
		t.Fatal("Lock of a held lock succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock when ctx's deadline passed: %v, want ctx's error (context.DeadlineExceeded)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after ctx's 200ms deadline", d)
	}

	cctx, cancel2 := context.WithCancel(ctx)
	go func() { time.Sleep(100 * time.Millisecond); cancel2() }()
	if u3, err := l.Lock(cctx, name, time.Second); !errors.Is(err, context.Canceled) {
		if u3 != nil {
			_ = u3(ctx)
		}
		t.Errorf("Lock when ctx was cancelled: %v, want context.Canceled", err)
	}
}

// testLockCancelledWaiters: callers whose context ends at any moment while
// they contend for a lock must leave no lease behind. (A lease taken by a
// statement that the client abandoned midway, but the server committed,
// is held by nobody: every later caller waits out the whole lease.)
func testLockCancelledWaiters(t *testing.T, h Harness) {
	s := h.New(t)
	l := locker(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "cancelled"
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				wait := time.Duration((w*7+i*13)%40) * 100 * time.Microsecond
				cctx, cancel := context.WithTimeout(ctx, wait)
				if unlock, err := l.Lock(cctx, name, time.Minute); err == nil {
					_ = unlock(ctx)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	unlock, err := l.Lock(wctx, name, time.Second)
	if err != nil {
		t.Fatalf("after contenders gave up at random moments, the lock is still held: %v (a cancelled Lock left a lease behind)", err)
	}
	_ = unlock(ctx)
}

// ---- Indexer ----

func mustAdd(t *testing.T, ix storage.Indexer, set, member string, ttl time.Duration) {
	t.Helper()
	if err := ix.AddMember(ctxFor(t), set, member, ttl); err != nil {
		t.Fatalf("AddMember(%q, %q, ttl %v): %v", set, member, ttl, err)
	}
}

func mustRemove(t *testing.T, ix storage.Indexer, set, member string) {
	t.Helper()
	if err := ix.RemoveMember(ctxFor(t), set, member); err != nil {
		t.Fatalf("RemoveMember(%q, %q): %v", set, member, err)
	}
}

// members returns set's members as a set, failing t on an error or on a
// member listed twice.
func members(t *testing.T, ix storage.Indexer, set string) map[string]bool {
	t.Helper()
	got, err := ix.Members(ctxFor(t), set)
	if err != nil {
		t.Fatalf("Members(%q): %v", set, err)
	}
	m := make(map[string]bool, len(got))
	for _, g := range got {
		if m[g] {
			t.Errorf("Members(%q) lists %q twice", set, g)
		}
		m[g] = true
	}
	return m
}

// wantMembers checks that set's members are exactly want (in any order).
func wantMembers(t *testing.T, ix storage.Indexer, set string, want ...string) {
	t.Helper()
	got := members(t, ix, set)
	var missing, extra []string
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
		if !got[w] {
			missing = append(missing, w)
		}
	}
	for g := range got {
		if !wanted[g] {
			extra = append(extra, g)
		}
	}
	if len(missing) > 0 {
		t.Errorf("Members(%q) lacks %d of the %d members it should have: %s", shorten(set), len(missing), len(want), list(missing))
	}
	if len(extra) > 0 {
		t.Errorf("Members(%q) has %d members it should not have: %s", shorten(set), len(extra), list(extra))
	}
}

// list shows a few members, shortened, so a failure with thousands of
// members stays readable.
func list(ms []string) string {
	const most = 8
	var b strings.Builder
	for i, m := range ms {
		if i == most {
			fmt.Fprintf(&b, " ... and %d more", len(ms)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", shorten(m))
	}
	return b.String()
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:30] + "..." + s[len(s)-20:]
	}
	return s
}

func testIndexBasic(t *testing.T, h Harness) {
	s := h.New(t)
	ix := indexer(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	set, other := p+"set", p+"other"

	wantMembers(t, ix, p+"never-used") // unknown: none, nil error
	mustAdd(t, ix, set, "a", 0)
	mustAdd(t, ix, set, "b", time.Hour)
	mustAdd(t, ix, set, "c", time.Hour)
	mustAdd(t, ix, other, "a", time.Hour) // same member, another set
	mustAdd(t, ix, other, "x", 0)
	wantMembers(t, ix, set, "a", "b", "c")
	wantMembers(t, ix, other, "a", "x")

	mustRemove(t, ix, set, "b")
	wantMembers(t, ix, set, "a", "c")
	if err := ix.RemoveMember(ctx, set, "b"); err != nil {
		t.Errorf("RemoveMember of a removed member: %v, want nil", err)
	}
	if err := ix.RemoveMember(ctx, set, "never-added"); err != nil {
		t.Errorf("RemoveMember of a member never added: %v, want nil", err)
	}
	if err := ix.RemoveMember(ctx, p+"never-used", "a"); err != nil {
		t.Errorf("RemoveMember from an unknown set: %v, want nil", err)
	}
	// Removing a from set left the other set's a alone.
	mustRemove(t, ix, set, "a")
	wantMembers(t, ix, other, "a", "x")
	mustRemove(t, ix, set, "c")
	wantMembers(t, ix, set) // emptied: none, nil error
	wantMembers(t, ix, p+"never-used")

	// A member can be added again after removal, and adding twice lists
	// it once.
	mustAdd(t, ix, set, "a", 0)
	mustAdd(t, ix, set, "a", time.Hour)
	wantMembers(t, ix, set, "a")

	// Look-alike members and set names stay distinct (LIKE wildcards,
	// collations, normalisation, the maximum length).
	odd := oddKeys(p)
	for _, m := range odd {
		mustAdd(t, ix, p+"odd", m, time.Hour)
	}
	wantMembers(t, ix, p+"odd", odd...)
	mustRemove(t, ix, p+"odd", p+"percent%")
	mustRemove(t, ix, p+"odd", p+"under_score")
	var kept []string
	for _, m := range odd {
		if m != p+"percent%" && m != p+"under_score" {
			kept = append(kept, m)
		}
	}
	wantMembers(t, ix, p+"odd", kept...)
	for i, name := range odd {
		mustAdd(t, ix, name, fmt.Sprint("m", i), 0)
	}
	for i, name := range odd {
		wantMembers(t, ix, name, fmt.Sprint("m", i))
	}
	wantMembers(t, ix, p+"percentage")
	wantMembers(t, ix, p+"%")

	// Re-adding renews the ttl. witness is added after renewed's first
	// add with the same ttl, so once witness has expired so has renewed's
	// first ttl: whatever the timing, renewed must then still be there.
	renew := p + "renew"
	mustAdd(t, ix, renew, "renewed", TTL)
	mustAdd(t, ix, renew, "witness", TTL)
	mustAdd(t, ix, renew, "renewed", time.Hour)
	deadline := time.Now().Add(3 * TTL)
	for members(t, ix, renew)["witness"] {
		if time.Now().After(deadline) {
			t.Fatalf("a member added with ttl %v is still listed after %v", TTL, 3*TTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantMembers(t, ix, renew, "renewed")
}

// testIndexTTL checks member expiry with one wait shared by every case, as
// testTTL does for entries.
func testIndexTTL(t *testing.T, h Harness) {
	s := h.New(t)
	ix := indexer(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	set, lone := p+"set", p+"lone"

	start := time.Now()
	mustAdd(t, ix, set, "expires", TTL)
	mustAdd(t, ix, set, "forever", 0)
	mustAdd(t, ix, set, "long", time.Hour)
	// Re-adding replaces the ttl every way.
	mustAdd(t, ix, set, "was-ttl", TTL)
	mustAdd(t, ix, set, "was-ttl", 0)
	mustAdd(t, ix, set, "was-forever", 0)
	mustAdd(t, ix, set, "was-forever", TTL)
	mustAdd(t, ix, set, "was-long", time.Hour)
	mustAdd(t, ix, set, "was-long", TTL)
	mustAdd(t, ix, set, "remove-expired", TTL)
	mustAdd(t, ix, lone, "only", TTL) // a set whose every member expires
	addDone := time.Now()             // every ttl above ran out by addDone+TTL
	if addDone.Sub(start) > TTL/4 {
		t.Skipf("adding 11 members took %v; too slow to check %v TTLs", addDone.Sub(start), TTL)
	}
	expiring := []string{"expires", "was-forever", "was-long", "remove-expired"}
	staying := []string{"forever", "long", "was-ttl"}

	wantFailure(t, "AddMember with a negative ttl", ix.AddMember(ctx, set, "negative", -time.Second))
	wantFailure(t, "AddMember with a negative ttl over a member", ix.AddMember(ctx, set, "forever", -time.Nanosecond))

	// Not early: all there at half the ttl (checked only if the answer
	// came back before the shortest ttl could have run out).
	time.Sleep(time.Until(start.Add(TTL / 2)))
	got := members(t, ix, set)
	if time.Since(start) < TTL {
		for _, m := range append(expiring, staying...) {
			if !got[m] {
				t.Errorf("member %q missing %v after it was added with ttl %v", m, time.Since(start).Round(time.Millisecond), TTL)
			}
		}
		if got["negative"] {
			t.Error("a member added with a negative ttl is listed")
		}
	}

	// Gone soon after the ttl, each on its own ttl, without any cleanup
	// having to run; the others stay.
	time.Sleep(time.Until(addDone.Add(TTL + 50*time.Millisecond)))
	deadline := addDone.Add(2 * TTL)
	for {
		got := members(t, ix, set)
		var still []string
		for _, m := range expiring {
			if got[m] {
				still = append(still, m)
			}
		}
		if len(still) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members %s still listed %v after they were added with ttl %v", list(still), time.Since(start).Round(time.Millisecond), TTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantMembers(t, ix, set, staying...)
	wantMembers(t, ix, lone)
	if err := ix.RemoveMember(ctx, set, "remove-expired"); err != nil {
		t.Errorf("RemoveMember of an expired member: %v", err)
	}
	// An expired member can be added again, with its new ttl.
	mustAdd(t, ix, set, "expires", 0)
	mustAdd(t, ix, lone, "only", time.Hour)
	wantMembers(t, ix, set, append(staying, "expires")...)
	wantMembers(t, ix, lone, "only")
}

// testIndexConcurrent has workers on several handles add and remove
// distinct members of one set at once, as logins and logouts of one account
// on several instances do, while readers list it. A store that rewrites the
// whole set loses additions or brings removed members back.
func testIndexConcurrent(t *testing.T, h Harness) {
	s := h.New(t)
	handles := []storage.Indexer{indexer(t, s)}
	if h.Reopen != nil {
		for range 2 {
			handles = append(handles, indexer(t, h.Reopen(t, s)))
		}
	}
	ctx := ctxFor(t)
	set := prefix(t) + "account"
	const workers, perWorker = 8, 24
	member := func(w, i int) string { return fmt.Sprintf("session-%d-%d", w, i) }
	removed := func(i int) bool { return i%3 == 1 }

	var (
		wg      sync.WaitGroup
		done    = make(chan struct{})
		start   = make(chan struct{})
		readers sync.WaitGroup
	)
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			ix := handles[r%len(handles)]
			<-start
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := ix.Members(ctx, set)
				if err != nil {
					t.Errorf("Members during concurrent changes: %v", err)
					return
				}
				seen := make(map[string]bool, len(got))
				for _, g := range got {
					if seen[g] {
						t.Errorf("Members during concurrent changes lists %q twice", g)
						return
					}
					seen[g] = true
				}
			}
		}()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ix := handles[w%len(handles)]
			<-start
			for i := range perWorker {
				ttl := time.Hour
				if i%2 == 0 {
					ttl = 0
				}
				if err := ix.AddMember(ctx, set, member(w, i), ttl); err != nil {
					t.Errorf("concurrent AddMember: %v", err)
					return
				}
				// Remove an earlier member of this worker's, so removals
				// race other workers' additions.
				if i > 0 && removed(i-1) {
					if err := ix.RemoveMember(ctx, set, member(w, i-1)); err != nil {
						t.Errorf("concurrent RemoveMember: %v", err)
						return
					}
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(done)
	readers.Wait()

	var want []string
	for w := range workers {
		for i := range perWorker {
			// The last member of a worker is never removed (its removal
			// would come at i == perWorker).
			if !removed(i) || i == perWorker-1 {
				want = append(want, member(w, i))
			}
		}
	}
	for i, ix := range handles {
		t.Logf("checking the set through handle %d of %d", i+1, len(handles))
		wantMembers(t, ix, set, want...)
	}
}

func testIndexInvalidNames(t *testing.T, h Harness) {
	s := h.New(t)
	ix := indexer(t, s)
	ctx := ctxFor(t)
	p := prefix(t)
	set := p + "set"
	mustAdd(t, ix, set, "ok", 0)
	invalid := invalidKeys(t, p)
	for name, k := range invalid {
		wantFailure(t, "AddMember to an invalid set name ("+name+")", ix.AddMember(ctx, k, "m", 0))
		wantFailure(t, "AddMember of an invalid member ("+name+")", ix.AddMember(ctx, set, k, time.Hour))
		// Nothing can be stored under an invalid name, so an error and an
		// empty answer are both fine; members are not.
		if got, _ := ix.Members(ctx, k); len(got) > 0 {
			t.Errorf("Members of an invalid set name (%s) = %q", name, got)
		}
		_ = ix.RemoveMember(ctx, k, "m") // either answer is fine; it must not panic
		_ = ix.RemoveMember(ctx, set, k)
	}
	// A refused name was not stored under a mangled form (truncated at
	// NUL or at the length limit).
	wantMembers(t, ix, set, "ok")
	wantMembers(t, ix, p+"nul")
	wantMembers(t, ix, p+"nulend")
	wantMembers(t, ix, invalid["too long"][:storage.MaxKeyLength])
}

// testIndexAcrossHandles: one instance sees the members another added,
// and a removal on one is a removal for all.
func testIndexAcrossHandles(t *testing.T, h Harness) {
	a := h.New(t)
	ixa := indexer(t, a)
	ixb := indexer(t, reopen(t, h, a))
	set := prefix(t) + "account"
	mustAdd(t, ixa, set, "from-a", time.Hour)
	wantMembers(t, ixb, set, "from-a")
	mustAdd(t, ixb, set, "from-b", 0)
	wantMembers(t, ixa, set, "from-a", "from-b")
	mustRemove(t, ixb, set, "from-a")
	wantMembers(t, ixa, set, "from-b")
	mustRemove(t, ixa, set, "from-b")
	wantMembers(t, ixb, set)
}

// ---- StaleReader ----

func staleReader(t *testing.T, s storage.Store) (storage.StaleReader, time.Duration) {
	t.Helper()
	sr, ok := s.(storage.StaleReader)
	if !ok {
		t.Skipf("%T does not implement storage.StaleReader", s)
	}
	bound := sr.MaxStaleness()
	if bound < 0 {
		t.Fatalf("MaxStaleness() = %v, want at least 0", bound)
	}
	if bound > MaxCheckedStaleness {
		t.Skipf("MaxStaleness() = %v is over %v: give the store under test a shorter bound", bound, MaxCheckedStaleness)
	}
	return sr, bound
}

// pauseReplica pauses s's replica until the returned func (also run at
// cleanup) resumes it; without Harness.PauseReplica it does nothing.
func pauseReplica(t *testing.T, h Harness, s storage.Store) (resume func()) {
	t.Helper()
	if h.PauseReplica == nil {
		t.Log("Harness.PauseReplica is nil: the replica is not made to lag")
		return func() {}
	}
	var once sync.Once
	r := h.PauseReplica(t, s)
	resume = func() { once.Do(r) }
	t.Cleanup(resume)
	return resume
}

// warmUp reads key through GetStale for a while: long enough for a
// replica to have applied what was written before the call, and for a
// store that measures lag only while GetStale is in use to know that its
// replica keeps up, so that the reads after it can go to the replica.
func warmUp(t *testing.T, sr storage.StaleReader, key string, bound time.Duration) {
	t.Helper()
	end := time.Now().Add(max(3*bound, 200*time.Millisecond))
	for time.Now().Before(end) {
		if _, err := sr.GetStale(ctxFor(t), key); err != nil {
			t.Fatalf("GetStale(%q): %v", key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantStaleValue(t *testing.T, sr storage.StaleReader, key string, want []byte) {
	t.Helper()
	got, err := sr.GetStale(ctxFor(t), key)
	if err != nil {
		t.Errorf("GetStale(%q): %v, want the value", key, err)
	} else if !bytes.Equal(got, want) {
		t.Errorf("GetStale(%q) = %s, want %s", key, show(got), show(want))
	}
}

func wantStaleNotFound(t *testing.T, sr storage.StaleReader, key, why string) {
	t.Helper()
	got, err := sr.GetStale(ctxFor(t), key)
	if !errors.Is(err, storage.ErrNotFound) || got != nil {
		t.Errorf("GetStale(%q) = %s, %v; want ErrNotFound: %s", key, show(got), err, why)
	}
}

// testStaleNewKeys: a key Set before the call is found even though the
// replica (paused) cannot have it, on this handle and from another; a key
// never set, or an invalid one, is not.
func testStaleNewKeys(t *testing.T, h Harness) {
	s := h.New(t)
	sr, bound := staleReader(t, s)
	if b2 := sr.MaxStaleness(); b2 != bound {
		t.Errorf("MaxStaleness changed from %v to %v", bound, b2)
	}
	p := prefix(t)
	mustSet(t, s, p+"before", []byte("set before the pause"), time.Hour)
	warmUp(t, sr, p+"before", bound)
	pauseReplica(t, h, s)

	mustSet(t, s, p+"new", []byte("just set"), time.Hour)
	wantStaleValue(t, sr, p+"new", []byte("just set"))
	if h.Reopen != nil {
		other := h.Reopen(t, s)
		mustSet(t, other, p+"other", []byte("set by another instance"), 0)
		wantStaleValue(t, sr, p+"other", []byte("set by another instance"))
	}
	wantStaleValue(t, sr, p+"before", []byte("set before the pause"))
	wantStaleNotFound(t, sr, p+"never-set", "it was never set")
	for name, k := range invalidKeys(t, p) {
		if got, err := sr.GetStale(ctxFor(t), k); err == nil || got != nil {
			t.Errorf("GetStale with an invalid key (%s) = %s, %v; want an error and no value", name, show(got), err)
		}
	}
	// Still found once the replica lags past the bound (then from the
	// primary).
	time.Sleep(bound + 50*time.Millisecond)
	wantStaleValue(t, sr, p+"new", []byte("just set"))
}

// testStaleNotUndone: with the replica paused, deletes and overwrites made
// on the primary (by another instance when Reopen is set: the check must
// not rely on the store's own writes) may show through GetStale for up to
// MaxStaleness, and never after. That is what keeps a logout, or an "end
// everywhere", from being undone by a lagging replica.
func testStaleNotUndone(t *testing.T, h Harness) {
	s := h.New(t)
	sr, bound := staleReader(t, s)
	writer := s
	if h.Reopen != nil {
		writer = h.Reopen(t, s)
	}
	ctx := ctxFor(t)
	p := prefix(t)
	keys := []string{p + "logged-out", p + "ended-1", p + "ended-2"}
	for _, k := range keys {
		mustSet(t, s, k, []byte("session of "+k), time.Hour)
	}
	mustSet(t, s, p+"renewed", []byte("old record"), time.Hour)
	warmUp(t, sr, p+"renewed", bound)
	resume := pauseReplica(t, h, s)

	for _, k := range keys {
		if err := writer.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	mustSet(t, writer, p+"renewed", []byte("new record"), time.Hour)
	changed := time.Now()

	// Within the bound the old values may show, but nothing else.
	for _, k := range keys {
		got, err := sr.GetStale(ctx, k)
		if err == nil && string(got) != "session of "+k {
			t.Errorf("GetStale(%q) right after its Delete = %s; want ErrNotFound or the deleted value", k, show(got))
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetStale(%q): %v", k, err)
		}
	}

	// Past the bound: never.
	time.Sleep(time.Until(changed.Add(bound + 10*time.Millisecond)))
	for round := range 2 {
		for _, k := range keys {
			wantStaleNotFound(t, sr, k, fmt.Sprintf("it was deleted on the primary more than MaxStaleness (%v) ago (round %d)", bound, round))
		}
		wantStaleValue(t, sr, p+"renewed", []byte("new record"))
		time.Sleep(bound / 2)
	}

	// And after the replica resumes and catches up, still gone.
	resume()
	warmUp(t, sr, p+"renewed", bound)
	for _, k := range keys {
		wantStaleNotFound(t, sr, k, "it was deleted, and the replica resumed")
	}
	wantStaleValue(t, sr, p+"renewed", []byte("new record"))
}

// testStaleTTL: an expired entry is invisible through GetStale even where
// the replica, up to date, still has its row; and GetStale's slices belong
// to the caller.
func testStaleTTL(t *testing.T, h Harness) {
	s := h.New(t)
	sr, _ := staleReader(t, s)
	p := prefix(t)
	start := time.Now()
	mustSet(t, s, p+"expires", []byte("short-lived"), TTL)
	mustSet(t, s, p+"stays", []byte("long-lived"), time.Hour)
	if time.Since(start) < TTL/2 {
		wantStaleValue(t, sr, p+"expires", []byte("short-lived"))
	}

	got, err := sr.GetStale(ctxFor(t), p+"stays")
	if err != nil {
		t.Fatalf("GetStale: %v", err)
	}
	full := got[:cap(got)]
	for i := range full {
		full[i] = 'Y'
	}
	wantStaleValue(t, sr, p+"stays", []byte("long-lived"))

	time.Sleep(time.Until(start.Add(TTL + 200*time.Millisecond)))
	wantStaleNotFound(t, sr, p+"expires", "its TTL has passed")
	wantStaleValue(t, sr, p+"stays", []byte("long-lived"))
}
