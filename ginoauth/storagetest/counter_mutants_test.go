package storagetest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The mutant store's storage.Counter, and the bugs the Counter/ checks
// must catch. They join the list in mutants_test.go here, so that each
// capability's mutants live beside its implementation.
func init() {
	mutants = append(mutants, []struct{ bug, failing string }{
		{"incr-lost-updates", "Counter/Concurrent"},
		{"incr-extends-ttl", "Counter/TTL"},
		{"incr-never-expires", "Counter/TTL"},
		{"incr-early-expiry", "Counter/TTL"},
		{"incr-expired-keeps-count", "Counter/TTL"},
		{"incr-ignores-by", "Counter/Basic"},
		{"incr-accepts-zero", "Counter/Basic"},
		{"incr-no-key-validation", "Counter/Basic"},
		{"incr-case-insensitive", "Counter/Basic"},
		{"incr-per-handle", "Counter/AcrossHandles"},
		{"incr-ignores-ctx", "Counter/Context"},
		{"incr-fault-is-zero", "Counter/Faults"},
	}...)
}

var _ storage.Counter = (*mutant)(nil)

// counters holds the mutants' counters: by backend (shared by Reopen), or
// by handle for incr-per-handle.
var counters = struct {
	mu sync.Mutex
	m  map[any]map[string]count
}{m: map[any]map[string]count{}}

type count struct {
	n   int64
	exp time.Time // zero: never
}

func (c count) live() bool { return c.exp.IsZero() || time.Now().Before(c.exp) }

// countersLocked is the handle's map of counters; counters.mu is held.
func (m *mutant) countersLocked() map[string]count {
	var owner any = m.b
	if m.bug == "incr-per-handle" {
		owner = m
	}
	cs := counters.m[owner]
	if cs == nil {
		cs = map[string]count{}
		counters.m[owner] = cs
	}
	return cs
}

func (m *mutant) Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if m.bug == "incr-ignores-ctx" {
		ctx = context.Background()
	}
	if err := m.check(ctx, key); err != nil {
		if m.bug == "incr-fault-is-zero" && errors.Is(err, errBroken) {
			return 0, nil
		}
		return 0, err
	}
	if m.bug != "incr-no-key-validation" {
		if err := storage.ValidateKey(key); err != nil {
			return 0, err
		}
	}
	if (by < 1 || ttl <= 0) && m.bug != "incr-accepts-zero" {
		return 0, errors.New("by must be at least 1 and ttl positive")
	}
	if m.bug == "incr-ignores-by" {
		by = 1
	}
	if m.bug == "incr-case-insensitive" {
		key = strings.ToLower(key)
	}
	if m.bug == "incr-lost-updates" {
		// Read, then write back later: a concurrent increment in between
		// is lost.
		counters.mu.Lock()
		old := m.countersLocked()[key]
		counters.mu.Unlock()
		time.Sleep(time.Millisecond)
		next := m.next(old, by, ttl)
		counters.mu.Lock()
		m.countersLocked()[key] = next
		counters.mu.Unlock()
		return next.n, nil
	}
	counters.mu.Lock()
	defer counters.mu.Unlock()
	cs := m.countersLocked()
	next := m.next(cs[key], by, ttl)
	cs[key] = next
	return next.n, nil
}

// next is old after an increment by by, with the mutant's bug.
func (m *mutant) next(old count, by int64, ttl time.Duration) count {
	fresh := old == (count{}) || !old.live()
	next := old
	if fresh && m.bug != "incr-expired-keeps-count" {
		next.n = 0
	}
	next.n += by
	switch {
	case m.bug == "incr-never-expires":
		next.exp = time.Time{}
	case m.bug == "incr-early-expiry" && fresh:
		next.exp = time.Now().Add(ttl / 10)
	case fresh || m.bug == "incr-extends-ttl":
		next.exp = time.Now().Add(ttl)
	}
	return next
}
