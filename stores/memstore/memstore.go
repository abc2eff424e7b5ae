// Package memstore is an in-memory storage.Store for tests, demos and
// single-process apps that accept losing every session on restart:
//
//	store := memstore.New()
//	mgr, err := ginoauth.New(ginoauth.Config{Storage: store, ...})
//
// It honours TTLs (expired entries and set members are invisible at once
// and swept in the background of writes), and implements the optional
// storage.Taker, storage.Locker (renewable), storage.Indexer, storage.Swapper and
// storage.Counter capabilities within the one process.
package memstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Store is an in-memory storage.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	entries map[string]entry
	locks   map[string]*lease
	sets    map[string]map[string]time.Time // set -> member -> expiry (zero: never)
	counts  map[string]count                // storage.Counter's counters (counter.go)
	writes  int
	now     func() time.Time
}

type entry struct {
	value     []byte
	expiresAt time.Time // zero: never
}

type lease struct {
	owner     string
	expiresAt time.Time
	released  chan struct{} // closed when the lease is released or replaced
}

var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Taker           = (*Store)(nil)
	_ storage.Locker          = (*Store)(nil)
	_ storage.RenewableLocker = (*Store)(nil)
	_ storage.Indexer         = (*Store)(nil)
)

// sweepEvery is how many writes (Set and AddMember) pass between sweeps of
// expired entries and members, so a long-running demo does not grow without
// bound while reads stay O(1).
const sweepEvery = 1024

// New returns an empty Store.
func New() *Store {
	return &Store{
		entries: make(map[string]entry),
		locks:   make(map[string]*lease),
		sets:    make(map[string]map[string]time.Time),
		now:     time.Now,
	}
}

func (s *Store) live(e entry, now time.Time) bool { return alive(e.expiresAt, now) }

// alive reports whether something expiring at exp (zero: never) is still
// there at now.
func alive(exp, now time.Time) bool { return exp.IsZero() || now.Before(exp) }

// wrote counts a write and sweeps every sweepEvery of them. s.mu is held.
func (s *Store) wrote(now time.Time) {
	s.writes++
	if s.writes%sweepEvery != 0 {
		return
	}
	for k, e := range s.entries {
		if !s.live(e, now) {
			delete(s.entries, k)
		}
	}
	for name, members := range s.sets {
		for m, exp := range members {
			if !alive(exp, now) {
				delete(members, m)
			}
		}
		if len(members) == 0 {
			delete(s.sets, name)
		}
	}
	s.sweepCounts(now)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &storage.Error{Op: "get", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !s.live(e, s.now()) {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), e.value...), nil
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: "set", Err: err}
	}
	if err := storage.ValidateKey(key); err != nil {
		return &storage.Error{Op: "set", Err: err}
	}
	if ttl < 0 {
		return &storage.Error{Op: "set", Err: fmt.Errorf("negative ttl %v", ttl)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e := entry{value: append([]byte(nil), value...)}
	if ttl > 0 {
		e.expiresAt = now.Add(ttl)
	}
	s.entries[key] = e
	s.wrote(now)
	return nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: "delete", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, key)
	return nil
}

// Take implements storage.Taker.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &storage.Error{Op: "take", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	delete(s.entries, key)
	if !s.live(e, s.now()) {
		return nil, storage.ErrNotFound
	}
	return e.value, nil
}

// Len reports how many entries are held, expired ones included until swept.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// AddMember implements storage.Indexer.
func (s *Store) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: "add-member", Err: err}
	}
	if err := storage.ValidateKey(set); err != nil {
		return &storage.Error{Op: "add-member", Err: fmt.Errorf("set name: %w", err)}
	}
	if err := storage.ValidateKey(member); err != nil {
		return &storage.Error{Op: "add-member", Err: fmt.Errorf("member: %w", err)}
	}
	if ttl < 0 {
		return &storage.Error{Op: "add-member", Err: fmt.Errorf("negative ttl %v", ttl)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	members := s.sets[set]
	if members == nil {
		members = make(map[string]time.Time)
		s.sets[set] = members
	}
	members[member] = exp
	s.wrote(now)
	return nil
}

// RemoveMember implements storage.Indexer.
func (s *Store) RemoveMember(ctx context.Context, set, member string) error {
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: "remove-member", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if members, ok := s.sets[set]; ok {
		delete(members, member)
		if len(members) == 0 {
			delete(s.sets, set)
		}
	}
	return nil
}

// Members implements storage.Indexer. The members come sorted, so that
// tests and demos see a stable order; the contract promises none.
func (s *Store) Members(ctx context.Context, set string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, &storage.Error{Op: "members", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []string
	for m, exp := range s.sets[set] {
		if alive(exp, now) {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

// memberCount reports how many members set holds, expired ones included
// until swept (for tests of the sweep).
func (s *Store) memberCount(set string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sets[set])
}

// Lock implements storage.Locker within this process.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	_, unlock, err := s.LockRenewable(ctx, name, ttl)
	return unlock, err
}

// LockRenewable implements storage.RenewableLocker within this process.
func (s *Store) LockRenewable(ctx context.Context, name string, ttl time.Duration) (string, storage.Unlock, error) {
	if ttl <= 0 {
		return "", nil, &storage.Error{Op: "lock", Err: fmt.Errorf("lock ttl must be positive, got %v", ttl)}
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	owner := hex.EncodeToString(tok[:])
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		s.mu.Lock()
		now := s.now()
		cur, held := s.locks[name]
		if !held || !now.Before(cur.expiresAt) {
			if held {
				close(cur.released) // the old lease lapsed; wake its waiters
			}
			s.locks[name] = &lease{owner: owner, expiresAt: now.Add(ttl), released: make(chan struct{})}
			s.mu.Unlock()
			return owner, s.unlocker(name, owner), nil
		}
		wait, lapse := cur.released, cur.expiresAt.Sub(now)
		s.mu.Unlock()

		timer := time.NewTimer(lapse)
		select {
		case <-wait:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// Renew implements storage.RenewableLocker: the lease lasts ttl from now
// if token still holds it and it has not lapsed.
func (s *Store) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if ttl <= 0 {
		return &storage.Error{Op: "renew", Err: fmt.Errorf("lock ttl must be positive, got %v", ttl)}
	}
	if err := ctx.Err(); err != nil {
		return &storage.Error{Op: "renew", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	cur, held := s.locks[name]
	if !held || cur.owner != token || !now.Before(cur.expiresAt) {
		return storage.ErrLeaseLost
	}
	cur.expiresAt = now.Add(ttl)
	return nil
}

func (s *Store) unlocker(name, owner string) storage.Unlock {
	return func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur, ok := s.locks[name]; ok && cur.owner == owner {
			delete(s.locks, name)
			close(cur.released)
		}
		return nil
	}
}
