package lease_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// No timing assertions: the tests check orderings (the lock is still held
// when the holder's context ends; nobody else gets it while renewals
// work), with leases long enough for a loaded machine.

const ttl = 1200 * time.Millisecond

var policy = lease.Policy{TTL: ttl, Max: time.Minute}

// tryLock reports whether l's lock name is free right now (and releases
// it if it took it).
func tryLock(t *testing.T, l storage.Locker, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	unlock, err := l.Lock(ctx, name, time.Second)
	if err != nil {
		return false
	}
	_ = unlock(context.Background())
	return true
}

// flaky is a RenewableLocker whose Renew fails while failing is set (a
// storage blip) or reports the lease lost while lost is set.
type flaky struct {
	*memstore.Store
	failing, lost atomic.Bool
	renewals      atomic.Int64
}

func (f *flaky) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	f.renewals.Add(1)
	switch {
	case f.lost.Load():
		return storage.ErrLeaseLost
	case f.failing.Load():
		return &storage.Error{Op: "renew", Err: errors.New("injected blip")}
	}
	return f.Store.Renew(ctx, name, token, ttl)
}

// plain is a Locker without renewals.
type plain struct{ s *memstore.Store }

func (p plain) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	return p.s.Lock(ctx, name, ttl)
}

// A holder that works for several leases keeps the lock through its
// renewals, and its context stays alive.
func TestRenewedWhileWorking(t *testing.T) {
	s := &flaky{Store: memstore.New()}
	h, err := lease.Take(context.Background(), s, "l", policy)
	if err != nil {
		t.Fatal(err)
	}
	for range 8 { // four leases
		time.Sleep(ttl / 2)
		if tryLock(t, s, "l") {
			t.Fatal("another caller took the lock while its holder was working and renewing")
		}
		if err := h.Context().Err(); err != nil {
			t.Fatalf("the holder's context ended while its lease was renewed: %v", context.Cause(h.Context()))
		}
	}
	if s.renewals.Load() == 0 {
		t.Fatal("never renewed")
	}
	if err := h.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Wait()
	if !tryLock(t, s, "l") {
		t.Fatal("the lock is still held after Unlock")
	}
	if h.Context().Err() == nil {
		t.Error("the holder's context lives on after Unlock")
	}
}

// Renewals fail (storage blip): the holder's context ends while the lease
// is still held, so nobody else can have the lock while the holder still
// works; then the lease lapses by itself.
func TestFailingRenewalsEndTheHolderFirst(t *testing.T) {
	s := &flaky{Store: memstore.New()}
	h, err := lease.Take(context.Background(), s, "l", policy)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	work, cancel := h.Bind(context.Background())
	defer cancel()
	s.failing.Store(true)
	select {
	case <-work.Done():
	case <-time.After(10 * ttl):
		t.Fatal("the holder's context never ended while renewals failed")
	}
	if tryLock(t, s, "l") {
		t.Fatal("the lease lapsed before the holder's context ended: another caller took the lock while the holder still worked")
	}
	if !errors.Is(context.Cause(work), lease.ErrExpiring) {
		t.Errorf("cause %v, want lease.ErrExpiring", context.Cause(work))
	}
	if s.renewals.Load() < 2 {
		t.Errorf("%d renewal attempts: a failed renewal is retried before the deadline", s.renewals.Load())
	}
	deadline := time.Now().Add(10 * ttl)
	for !tryLock(t, s, "l") {
		if time.Now().After(deadline) {
			t.Fatal("the unrenewed lease never lapsed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A renewal that finds the lease lost ends the holder's context at once.
func TestLostLeaseEndsTheHolder(t *testing.T) {
	s := &flaky{Store: memstore.New()}
	h, err := lease.Take(context.Background(), s, "l", policy)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	s.lost.Store(true)
	select {
	case <-h.Context().Done():
	case <-time.After(10 * ttl):
		t.Fatal("a lost lease did not end the holder's context")
	}
	if !errors.Is(context.Cause(h.Context()), storage.ErrLeaseLost) {
		t.Errorf("cause %v, want storage.ErrLeaseLost", context.Cause(h.Context()))
	}
	if n := s.renewals.Load(); n != 1 {
		t.Errorf("%d renewals after the lease was reported lost, want 1", n)
	}
}

// Renewals stop after Max: the holder's context ends before the lease
// lapses, as for a lease that is not renewed.
func TestHeldNoLongerThanMax(t *testing.T) {
	s := memstore.New()
	h, err := lease.Take(context.Background(), s, "l", lease.Policy{TTL: ttl, Max: 2 * ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	select {
	case <-h.Context().Done():
	case <-time.After(20 * ttl):
		t.Fatal("the holder's context outlived Max")
	}
	if tryLock(t, s, "l") {
		t.Fatal("the lease lapsed before the holder's context ended")
	}
}

// A store without renewals (a plain Locker) gets one lease of Max, as
// before: held for all of it, and the holder's context ends before it.
func TestPlainLockerKeepsOneLongLease(t *testing.T) {
	s := memstore.New()
	p := lease.Policy{TTL: ttl / 4, Max: ttl}
	h, err := lease.Take(context.Background(), plain{s}, "l", p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if h.TTL() != ttl {
		t.Errorf("lease %v on a plain Locker, want Max (%v)", h.TTL(), ttl)
	}
	time.Sleep(p.TTL * 2) // past the short lease a renewable store would get
	if tryLock(t, s, "l") {
		t.Fatal("a plain Locker's lease was shorter than Max")
	}
	<-h.Context().Done()
	if tryLock(t, s, "l") {
		t.Fatal("the lease lapsed before the holder's context ended")
	}
	if !errors.Is(context.Cause(h.Context()), lease.ErrExpiring) {
		t.Errorf("cause %v, want lease.ErrExpiring", context.Cause(h.Context()))
	}
}

// A lock taken after a long wait is confirmed by a renewal at once: its
// context does not end early because the wait ate into the lease.
func TestLongWaitIsConfirmed(t *testing.T) {
	s := &flaky{Store: memstore.New()}
	first, err := lease.Take(context.Background(), s, "l", policy)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(ttl) // held for most of a lease
		_ = first.Unlock(context.Background())
	}()
	second := &flaky{Store: s.Store} // the same lock, its own count
	h, err := lease.Take(context.Background(), second, "l", policy)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if second.renewals.Load() == 0 {
		t.Fatal("a lock taken after a long wait was not confirmed by a renewal")
	}
}

// Local locks of this process never end their holder's context.
func TestLocal(t *testing.T) {
	released := false
	h := lease.Local(func(context.Context) error { released = true; return nil })
	if h.Context().Err() != nil {
		t.Fatal("a local lock's context ended")
	}
	if err := h.Unlock(context.Background()); err != nil || !released {
		t.Fatalf("Unlock: %v, released %v", err, released)
	}
	h.Wait()
}
