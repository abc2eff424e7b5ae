package storagetest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
)

// The suite is only worth something if each check can fail. TestMutants
// runs it, in a child process, against a small correct store with one bug
// switched on at a time, and requires the check meant to catch that bug to
// fail. The control run (no bug) must pass everything.

const mutantEnv = "STORAGETEST_MUTANT"

// maxChildren is how many mutant children run at once.
const maxChildren = 16

var mutants = []struct {
	bug, failing string // failing: the subtest that must catch it
}{
	{"", ""}, // control: the correct store passes the whole suite
	{"take-get-then-delete", "Take/ExactlyOnce"},
	{"take-returns-expired", "TTL"},
	{"get-shares-slice", "ValueOwnership"},
	{"set-keeps-slice", "ValueOwnership"},
	{"ignore-ttl", "TTL"},
	{"early-expiry", "TTL"},
	{"overwrite-keeps-ttl", "TTL"},
	{"negative-ttl-accepted", "NegativeTTL"},
	{"no-key-validation", "InvalidKeys"},
	{"key-cut-at-nul", "InvalidKeys"},
	{"case-insensitive-keys", "OddKeys"},
	{"ignore-ctx", "ContextCanceled"},
	{"delete-missing-errors", "Basic"},
	{"missing-is-error", "Basic"},
	{"missing-is-nil", "Basic"},
	{"fault-is-not-found", "Faults"},
	{"truncate-large-values", "LargeValue"},
	{"torn-writes", "Overwrite"},
	{"reopen-not-shared", "CrossHandle"},
	{"lock-no-exclusion", "Lock/MutualExclusion"},
	{"lock-per-handle", "Lock/AcrossHandles"},
	{"lock-ignores-name", "Lock/IndependentNames"},
	{"lock-never-lapses", "Lock/LeaseLapses"},
	{"lock-lapses-early", "Lock/LeaseLapses"},
	{"unlock-any-holder", "Lock/StaleUnlock"},
	{"lock-ignores-ctx", "Lock/Context"},
	{"lock-leaks-on-cancel", "Lock/CancelledWaiters"},
	{"renew-ignores-ttl", "Lock/RenewExtends"},
	{"renew-revives-lapsed", "Lock/RenewLapsed"},
	{"renew-any-holder", "Lock/RenewTakenOver"},
	{"renew-zero-ttl-accepted", "Lock/RenewArguments"},
	{"members-never-expire", "Index/TTL"},
	{"members-expiry-per-set", "Index/TTL"},
	{"member-negative-ttl-accepted", "Index/TTL"},
	{"member-renew-keeps-ttl", "Index/Basic"},
	{"remove-missing-member-errors", "Index/Basic"},
	{"members-ignore-set", "Index/Basic"},
	{"members-lost-updates", "Index/Concurrent"},
	{"index-no-key-validation", "Index/InvalidNames"},
	{"index-per-handle", "Index/AcrossHandles"},
	{"members-fault-is-empty", "Faults"},
	{"swap-get-then-set", "Swap/ExactlyOnce"},
	{"swap-resurrects", "Swap/Basic"},
	{"swap-ignores-old", "Swap/Basic"},
	{"swap-prefix-compare", "Swap/Basic"},
	{"swap-negative-ttl-accepted", "Swap/Basic"},
	{"swap-keeps-ttl", "Swap/TTL"},
	{"swap-expired", "Swap/TTL"},
	{"swap-fault-is-false", "Swap/Faults"},
	{"stale-no-miss-fallback", "Stale/NewKeys"},
	{"stale-ignores-lag", "Stale/NotUndone"},
	{"stale-bound-too-loose", "Stale/NotUndone"},
	{"stale-lag-from-own-writes", "Stale/NotUndone"},
	{"stale-ignores-expiry", "Stale/TTL"},
	{"stale-shares-slice", "Stale/TTL"},
	{"stale-fault-is-not-found", "Faults"},
	{"stale-ignores-ctx", "ContextCanceled"},
}

func TestMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("in a child process")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	// The children mostly sleep (TTLs, leases), so many run at once rather
	// than -parallel (GOMAXPROCS) at a time; but not all: starting every
	// child at once (under -race, on 2 cores) delayed the control's TTL
	// check past its deadline.
	type result struct {
		out []byte
		err error
	}
	results := make([]result, len(mutants))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxChildren)
	for i, m := range mutants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			run := "^TestMutantChild$"
			if m.failing != "" {
				for _, part := range strings.Split(m.failing, "/") {
					run += "/^" + part + "$"
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v", "-test.timeout=60s")
			cmd.Env = append(os.Environ(), mutantEnv+"="+mutantName(m.bug))
			results[i].out, results[i].err = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i, m := range mutants {
		out, err := results[i].out, results[i].err
		t.Run(mutantName(m.bug), func(t *testing.T) {
			if strings.Contains(string(out), "panic:") {
				t.Fatalf("child panicked:\n%s", out)
			}
			if m.failing == "" {
				if err != nil {
					t.Fatalf("the correct store failed the suite: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("bug %q went unnoticed by %s:\n%s", m.bug, m.failing, out)
			}
			if want := "--- FAIL: TestMutantChild/" + m.failing; !strings.Contains(string(out), want) {
				t.Fatalf("bug %q: child failed, but not in %s:\n%s", m.bug, m.failing, out)
			}
		})
	}
}

func mutantName(bug string) string {
	if bug == "" {
		return "control"
	}
	return bug
}

func TestMutantChild(t *testing.T) {
	bug := os.Getenv(mutantEnv)
	if bug == "" {
		t.Skip("only run by TestMutants")
	}
	if bug == "control" {
		bug = ""
	}
	storagetest.Run(t, storagetest.Harness{
		New: func(t *testing.T) storage.Store {
			return &mutant{bug: bug, b: newBackend()}
		},
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			m := s.(*mutant)
			if bug == "reopen-not-shared" {
				return &mutant{bug: bug, b: newBackend()}
			}
			if bug == "lock-per-handle" {
				b := *m.b // shares the maps: same data...
				b.locksMu = &sync.Mutex{}
				b.locks = map[string]lease{} // ...but not the locks
				return &mutant{bug: bug, b: &b}
			}
			if bug == "index-per-handle" {
				b := *m.b // same entries and locks, but not the sets
				b.sets = map[string]map[string]time.Time{}
				b.setExp = map[string]time.Time{}
				return &mutant{bug: bug, b: &b}
			}
			return &mutant{bug: bug, b: m.b}
		},
		Break: func(t *testing.T, s storage.Store) {
			m := s.(*mutant)
			m.b.mu.Lock()
			m.b.broken = true
			m.b.mu.Unlock()
		},
		PauseReplica: func(t *testing.T, s storage.Store) func() {
			b := s.(*mutant).b
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.pauses == 0 {
				b.replica = make(map[string]entry, len(b.data))
				for k, e := range b.data {
					b.replica[k] = e
				}
				b.pausedAt = time.Now()
			}
			b.pauses++
			return func() {
				b.mu.Lock()
				defer b.mu.Unlock()
				if b.pauses--; b.pauses == 0 {
					b.replica = nil
				}
			}
		},
	})
}

// backend is the data a mutant handle works on; Reopen shares it.
type backend struct {
	mu      *sync.Mutex
	data    map[string]entry
	broken  bool
	locksMu *sync.Mutex
	locks   map[string]lease
	sets    map[string]map[string]time.Time // set -> member -> expiry (zero: never); under mu
	setExp  map[string]time.Time            // per-set expiry, for members-expiry-per-set; under mu

	// The replica GetStale reads: data itself while it keeps up, a copy
	// of data taken at the first of pauses nested pauses while paused.
	// All under mu.
	replica  map[string]entry
	pauses   int
	pausedAt time.Time
}

type entry struct {
	v   []byte
	exp time.Time
}

type lease struct {
	owner int64
	exp   time.Time
}

func newBackend() *backend {
	return &backend{
		mu: &sync.Mutex{}, data: map[string]entry{}, locksMu: &sync.Mutex{}, locks: map[string]lease{},
		sets: map[string]map[string]time.Time{}, setExp: map[string]time.Time{},
	}
}

// mutant is a deliberately simple correct store, plus the bug named by bug.
type mutant struct {
	bug string
	b   *backend
	// lastWrite is when this handle last wrote, for
	// stale-lag-from-own-writes; under b.mu.
	lastWrite time.Time
}

var errBroken = errors.New("backend broken")

func (m *mutant) key(k string) string {
	switch m.bug {
	case "case-insensitive-keys":
		return strings.ToLower(k)
	case "key-cut-at-nul":
		if i := strings.IndexByte(k, 0); i >= 0 {
			return k[:i]
		}
	}
	return k
}

func (m *mutant) check(ctx context.Context, key string) error {
	if m.bug != "ignore-ctx" && ctx.Err() != nil {
		return ctx.Err()
	}
	m.b.mu.Lock()
	broken := m.b.broken
	m.b.mu.Unlock()
	if broken {
		if m.bug == "fault-is-not-found" {
			return storage.ErrNotFound
		}
		return errBroken
	}
	return nil
}

func (m *mutant) live(e entry) bool { return e.exp.IsZero() || time.Now().Before(e.exp) }

func (m *mutant) Get(ctx context.Context, key string) ([]byte, error) {
	if err := m.check(ctx, key); err != nil {
		return nil, err
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	e, ok := m.b.data[m.key(key)]
	if !ok || !m.live(e) {
		switch m.bug {
		case "missing-is-error":
			return nil, errors.New("no such key")
		case "missing-is-nil":
			return nil, nil
		}
		return nil, storage.ErrNotFound
	}
	if m.bug == "get-shares-slice" {
		return e.v, nil
	}
	return append([]byte(nil), e.v...), nil
}

func (m *mutant) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := m.check(ctx, key); err != nil {
		return err
	}
	if m.bug != "no-key-validation" && m.bug != "key-cut-at-nul" {
		if err := storage.ValidateKey(key); err != nil {
			return err
		}
	} else if key == "" || !utf8.ValidString(key) {
		return errors.New("bad key") // keep the other invalid-key checks passing
	}
	if ttl < 0 {
		if m.bug != "negative-ttl-accepted" {
			return errors.New("negative ttl")
		}
		ttl = 0
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	k := m.key(key)
	e := entry{v: append([]byte(nil), value...)}
	if m.bug == "set-keeps-slice" {
		e.v = value
	}
	if m.bug == "truncate-large-values" && len(e.v) > 64<<10 {
		e.v = e.v[:64<<10]
	}
	if m.bug == "torn-writes" && len(e.v) > 10 {
		if old, ok := m.b.data[k]; ok && len(old.v) > 10 {
			e.v = append(e.v[:5:5], old.v[5:]...)
		}
	}
	switch {
	case ttl == 0 || m.bug == "ignore-ttl":
	case m.bug == "early-expiry":
		e.exp = time.Now().Add(ttl / 10)
	default:
		e.exp = time.Now().Add(ttl)
	}
	if old, ok := m.b.data[k]; ok && m.bug == "overwrite-keeps-ttl" && m.live(old) {
		e.exp = old.exp
	}
	m.b.data[k] = e
	m.lastWrite = time.Now()
	return nil
}

func (m *mutant) Delete(ctx context.Context, key string) error {
	if err := m.check(ctx, key); err != nil {
		return err
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if _, ok := m.b.data[m.key(key)]; !ok && m.bug == "delete-missing-errors" {
		return errors.New("no such key")
	}
	delete(m.b.data, m.key(key))
	m.lastWrite = time.Now()
	return nil
}

func (m *mutant) Take(ctx context.Context, key string) ([]byte, error) {
	if m.bug == "take-get-then-delete" {
		v, err := m.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Millisecond)
		return v, m.Delete(ctx, key)
	}
	if err := m.check(ctx, key); err != nil {
		return nil, err
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	e, ok := m.b.data[m.key(key)]
	delete(m.b.data, m.key(key))
	if !ok || (!m.live(e) && m.bug != "take-returns-expired") {
		return nil, storage.ErrNotFound
	}
	return e.v, nil
}

var owners struct {
	sync.Mutex
	n int64
}

func (m *mutant) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	_, unlock, err := m.LockRenewable(ctx, name, ttl)
	return unlock, err
}

func (m *mutant) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if m.bug == "lock-ignores-name" {
		name = "global"
	}
	if ttl <= 0 && m.bug != "renew-zero-ttl-accepted" {
		return errors.New("ttl must be positive")
	}
	if err := m.check(ctx, name); err != nil {
		return err
	}
	owner, err := strconv.ParseInt(token, 10, 64)
	if err != nil && m.bug != "renew-any-holder" {
		return storage.ErrLeaseLost
	}
	m.b.locksMu.Lock()
	defer m.b.locksMu.Unlock()
	cur, held := m.b.locks[name]
	switch {
	case !held:
		return storage.ErrLeaseLost
	case cur.owner != owner && m.bug != "renew-any-holder":
		return storage.ErrLeaseLost
	case !time.Now().Before(cur.exp) && m.bug != "renew-revives-lapsed":
		return storage.ErrLeaseLost
	}
	if m.bug != "renew-ignores-ttl" {
		cur.exp = time.Now().Add(ttl)
		m.b.locks[name] = cur
	}
	return nil
}

func (m *mutant) LockRenewable(ctx context.Context, name string, ttl time.Duration) (string, storage.Unlock, error) {
	if ttl <= 0 {
		return "", nil, errors.New("ttl must be positive")
	}
	if m.bug == "lock-ignores-name" {
		name = "global"
	}
	owners.Lock()
	owners.n++
	owner := owners.n
	owners.Unlock()
	start := time.Now()
	for {
		if err := m.check(ctx, name); err != nil && m.bug != "lock-ignores-ctx" {
			if m.bug == "lock-leaks-on-cancel" { // the abandoned attempt took the lease anyway
				m.b.locksMu.Lock()
				if cur, held := m.b.locks[name]; !held || !time.Now().Before(cur.exp) {
					m.b.locks[name] = lease{owner: owner, exp: time.Now().Add(ttl)}
				}
				m.b.locksMu.Unlock()
			}
			return "", nil, err
		}
		if m.bug == "lock-ignores-ctx" && time.Since(start) > time.Second {
			return "", nil, errors.New("gave up") // late, and not ctx's error
		}
		m.b.locksMu.Lock()
		cur, held := m.b.locks[name]
		free := !held || (!time.Now().Before(cur.exp) && m.bug != "lock-never-lapses")
		if free || m.bug == "lock-no-exclusion" {
			exp := time.Now().Add(ttl)
			if m.bug == "lock-lapses-early" {
				exp = time.Now().Add(ttl / 10)
			}
			m.b.locks[name] = lease{owner: owner, exp: exp}
			m.b.locksMu.Unlock()
			return strconv.FormatInt(owner, 10), func(context.Context) error {
				m.b.locksMu.Lock()
				defer m.b.locksMu.Unlock()
				if cur, ok := m.b.locks[name]; ok && (cur.owner == owner || m.bug == "unlock-any-holder") {
					delete(m.b.locks, name)
				}
				return nil
			}, nil
		}
		m.b.locksMu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

func (m *mutant) setName(set string) string {
	if m.bug == "members-ignore-set" {
		return "all"
	}
	return set
}

func (m *mutant) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := m.check(ctx, set); err != nil {
		return err
	}
	if m.bug != "index-no-key-validation" {
		if err := storage.ValidateKey(set); err != nil {
			return err
		}
		if err := storage.ValidateKey(member); err != nil {
			return err
		}
	}
	if ttl < 0 {
		if m.bug != "member-negative-ttl-accepted" {
			return errors.New("negative ttl")
		}
		ttl = 0
	}
	var exp time.Time
	if ttl > 0 && m.bug != "members-never-expire" {
		exp = time.Now().Add(ttl)
	}
	set = m.setName(set)
	if m.bug == "members-lost-updates" {
		// Read the whole set, change it, write it back: without a lock
		// around the three steps, concurrent changes overwrite each other.
		next := m.copySet(set)
		next[member] = exp
		time.Sleep(time.Millisecond)
		m.b.mu.Lock()
		m.b.sets[set] = next
		m.b.mu.Unlock()
		return nil
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	ms := m.b.sets[set]
	if ms == nil {
		ms = map[string]time.Time{}
		m.b.sets[set] = ms
	}
	if old, ok := ms[member]; ok && m.bug == "member-renew-keeps-ttl" && m.live(entry{exp: old}) {
		exp = old
	}
	ms[member] = exp
	m.b.setExp[set] = exp // only read by members-expiry-per-set: the last add's expiry is the set's
	return nil
}

func (m *mutant) copySet(set string) map[string]time.Time {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	next := make(map[string]time.Time, len(m.b.sets[set])+1)
	for k, v := range m.b.sets[set] {
		next[k] = v
	}
	return next
}

func (m *mutant) RemoveMember(ctx context.Context, set, member string) error {
	if err := m.check(ctx, set); err != nil {
		return err
	}
	set = m.setName(set)
	if m.bug == "members-lost-updates" {
		next := m.copySet(set)
		delete(next, member)
		time.Sleep(time.Millisecond)
		m.b.mu.Lock()
		m.b.sets[set] = next
		m.b.mu.Unlock()
		return nil
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if _, ok := m.b.sets[set][member]; !ok && m.bug == "remove-missing-member-errors" {
		return errors.New("no such member")
	}
	delete(m.b.sets[set], member)
	return nil
}

func (m *mutant) Members(ctx context.Context, set string) ([]string, error) {
	if err := m.check(ctx, set); err != nil {
		if m.bug == "members-fault-is-empty" && errors.Is(err, errBroken) {
			return nil, nil
		}
		return nil, err
	}
	set = m.setName(set)
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if m.bug == "members-expiry-per-set" && !m.live(entry{exp: m.b.setExp[set]}) {
		return nil, nil
	}
	var out []string
	for member, exp := range m.b.sets[set] {
		if m.bug == "members-expiry-per-set" || m.live(entry{exp: exp}) {
			out = append(out, member)
		}
	}
	return out, nil
}

func (m *mutant) Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if m.bug == "swap-get-then-set" {
		// Read, compare, write: without one step, racing swaps all win and
		// a Delete between the read and the write is undone.
		cur, err := m.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil
		}
		if err != nil || string(cur) != string(old) {
			return false, err
		}
		time.Sleep(time.Millisecond)
		return true, m.Set(ctx, key, new, ttl)
	}
	if err := m.check(ctx, key); err != nil {
		if m.bug == "swap-fault-is-false" {
			return false, nil
		}
		return false, err
	}
	if err := storage.ValidateKey(key); err != nil {
		return false, err
	}
	if ttl < 0 {
		if m.bug != "swap-negative-ttl-accepted" {
			return false, errors.New("negative ttl")
		}
		ttl = 0
	}
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	k := m.key(key)
	cur, ok := m.b.data[k]
	switch {
	case m.bug == "swap-resurrects" && !ok:
	case !ok:
		return false, nil
	case !m.live(cur) && m.bug != "swap-expired":
		return false, nil
	case m.bug == "swap-ignores-old":
	case m.bug == "swap-prefix-compare" && strings.HasPrefix(string(cur.v), string(old)):
	case string(cur.v) != string(old):
		return false, nil
	}
	e := entry{v: append([]byte(nil), new...)}
	if ttl > 0 {
		e.exp = time.Now().Add(ttl)
	}
	if m.bug == "swap-keeps-ttl" && ok {
		e.exp = cur.exp
	}
	m.b.data[k] = e
	return true, nil
}

// staleBound is the mutants' MaxStaleness.
const staleBound = 300 * time.Millisecond

func (m *mutant) MaxStaleness() time.Duration { return staleBound }

func (m *mutant) GetStale(ctx context.Context, key string) ([]byte, error) {
	if m.bug != "stale-ignores-ctx" && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := storage.ValidateKey(key); err != nil {
		return nil, storage.ErrNotFound
	}
	m.b.mu.Lock()
	view := m.b.data
	lag := time.Duration(0)
	if m.b.replica != nil {
		view = m.b.replica
		lag = time.Since(m.b.pausedAt)
		if m.bug == "stale-lag-from-own-writes" {
			// Lag judged from this handle's writes only: blind to
			// another instance's.
			lag = 0
			if m.lastWrite.After(m.b.pausedAt) {
				lag = time.Since(m.b.pausedAt)
			}
		}
	}
	bound := staleBound
	if m.bug == "stale-bound-too-loose" {
		bound *= 10
	}
	if lag <= bound || m.bug == "stale-ignores-lag" {
		e, ok := view[key]
		if ok && (m.live(e) || m.bug == "stale-ignores-expiry") {
			defer m.b.mu.Unlock()
			if m.bug == "stale-shares-slice" {
				return e.v, nil
			}
			return append([]byte(nil), e.v...), nil
		}
		if m.bug == "stale-no-miss-fallback" {
			m.b.mu.Unlock()
			return nil, storage.ErrNotFound
		}
	}
	m.b.mu.Unlock()
	v, err := m.Get(ctx, key)
	if err != nil && m.bug == "stale-fault-is-not-found" {
		return nil, storage.ErrNotFound
	}
	return v, err
}

var (
	_ storage.StaleReader     = (*mutant)(nil)
	_ storage.Taker           = (*mutant)(nil)
	_ storage.Locker          = (*mutant)(nil)
	_ storage.RenewableLocker = (*mutant)(nil)
	_ storage.Indexer         = (*mutant)(nil)
	_ storage.Swapper         = (*mutant)(nil)
)
