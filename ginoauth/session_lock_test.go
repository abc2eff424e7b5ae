package ginoauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Without a storage.Locker, the device lock is this process's: it still
// serialises the holders of one login's lock (and only those), and a
// waiter that gives up gets a *storage.Error (503), not the lock.
func TestDeviceLockWithoutALocker(t *testing.T) {
	cfg := validConfig()
	cfg.Storage = newPlainStorage()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := &sessionRecord{DID: "did:plc:alice", OAuthSessionID: "s1", CreatedAt: time.Unix(100, 5)}
	rotated := *rec // a rotation's successor: same login, same lock
	rotated.Previous, rotated.Successor = "x", "y"
	other := &sessionRecord{DID: "did:plc:alice", OAuthSessionID: "s2", CreatedAt: rec.CreatedAt}
	if deviceLockName(rec) != deviceLockName(&rotated) || deviceLockName(rec) == deviceLockName(other) {
		t.Fatal("the lock must be per login: shared by its tokens, not by other logins")
	}

	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rec
			if i%2 == 1 {
				r = &rotated
			}
			_, release, err := m.sessions.lockDevice(ctx, r)
			if err != nil {
				t.Error(err)
				return
			}
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d times two holders at once; want none", overlaps.Load())
	}

	_, release, err := m.sessions.lockDevice(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, r2, err := m.sessions.lockDevice(ctx, other); err != nil {
		t.Fatalf("another login's lock: %v", err)
	} else {
		r2()
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	var se *storage.Error
	if _, _, err := m.sessions.lockDevice(short, rec); !errors.As(err, &se) {
		t.Fatalf("a waiter that gives up: %v; want a *storage.Error", err)
	}
	release()
	if _, r3, err := m.sessions.lockDevice(ctx, rec); err != nil {
		t.Fatalf("after the release: %v", err)
	} else {
		r3()
	}
	if n := m.sessions.localLocks.Len(); n != 0 {
		t.Fatalf("%d lock entries left; want none", n)
	}
}

// blippyStore is a memstore whose lease renewals fail while failing is set
// (a storage blip).
type blippyStore struct {
	*memstore.Store
	failing atomic.Bool
}

func (b *blippyStore) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if b.failing.Load() {
		return &storage.Error{Op: "renew", Err: errors.New("injected blip")}
	}
	return b.Store.Renew(ctx, name, token, ttl)
}

// On a storage.RenewableLocker the device lock is a short lease renewed
// while its holder works: a holder that works for several leases keeps
// it; when renewals fail, the holder's context ends while the lease is
// still held, so it stops before another instance can take the lock.
func TestDeviceLockRenewed(t *testing.T) {
	store := &blippyStore{Store: memstore.New()}
	cfg := validConfig()
	cfg.Storage = store
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const lease = 1200 * time.Millisecond
	m.sessions.lockLease = lease
	rec := &sessionRecord{DID: "did:plc:alice", OAuthSessionID: "s1", CreatedAt: time.Unix(100, 5)}
	ctx := context.Background()
	work, release, err := m.sessions.lockDevice(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	free := func() bool {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, r2, err := m.sessions.lockDevice(wctx, rec)
		if err == nil {
			r2()
		}
		return err == nil
	}
	for range 6 { // three leases
		time.Sleep(lease / 2)
		if free() {
			t.Fatal("another holder got the device lock while its holder worked and renewed it")
		}
		if work.Err() != nil {
			t.Fatalf("the holder's context ended while its lease was renewed: %v", context.Cause(work))
		}
	}
	store.failing.Store(true)
	select {
	case <-work.Done():
	case <-time.After(10 * lease):
		t.Fatal("the holder's context never ended while renewals failed")
	}
	if free() {
		t.Fatal("the lease lapsed before the holder's context ended")
	}
	release()
	if !free() {
		t.Fatal("the device lock is still held after its release")
	}
}
