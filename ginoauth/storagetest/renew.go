package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The checks of the optional storage.RenewableLocker (leases their holder
// extends).

var renewChecks = []struct {
	name string
	fn   func(*testing.T, Harness)
}{
	{"Lock/RenewExtends", testRenewExtends},
	{"Lock/RenewLapsed", testRenewLapsed},
	{"Lock/RenewTakenOver", testRenewTakenOver},
	{"Lock/RenewArguments", testRenewArguments},
}

func renewable(t *testing.T, s storage.Store) storage.RenewableLocker {
	t.Helper()
	rl, ok := s.(storage.RenewableLocker)
	if !ok {
		t.Skipf("%T does not implement storage.RenewableLocker", s)
	}
	return rl
}

// otherHandle is a second handle on s's data when the harness can open
// one (another app instance), else s itself.
func otherHandle(t *testing.T, h Harness, s storage.Store) storage.Locker {
	t.Helper()
	if h.Reopen != nil {
		return locker(t, h.Reopen(t, s))
	}
	return locker(t, s)
}

// wantHeld fails unless name stays held against a Lock on l for d.
func wantHeld(t *testing.T, l storage.Locker, name string, d time.Duration, why string) {
	t.Helper()
	ctx := ctxFor(t)
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if unlock, err := l.Lock(cctx, name, time.Second); err == nil {
		_ = unlock(ctx)
		t.Fatalf("another caller took the lock: %s", why)
	}
}

// wantFree fails unless a Lock on l takes name within d, and releases it.
func wantFree(t *testing.T, l storage.Locker, name string, d time.Duration, why string) {
	t.Helper()
	ctx := ctxFor(t)
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	unlock, err := l.Lock(cctx, name, time.Second)
	if err != nil {
		t.Fatalf("Lock within %v: %v (%s)", d, err, why)
	}
	_ = unlock(ctx)
}

func wantLost(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("Renew %s: %v, want an error wrapping storage.ErrLeaseLost", what, err)
	}
}

// testRenewExtends: a holder that renews keeps its lease well past its
// ttl, against other handles; once it stops, the lease lapses about ttl
// after the last renewal; its Unlock still releases after renewals.
func testRenewExtends(t *testing.T, h Harness) {
	s := h.New(t)
	rl := renewable(t, s)
	other := otherHandle(t, h, s)
	ctx := ctxFor(t)
	name := prefix(t) + "renewed"

	token, unlock, err := rl.LockRenewable(ctx, name, TTL)
	if err != nil {
		t.Fatal(err)
	}
	if token == "" {
		t.Fatal("LockRenewable returned an empty token")
	}
	// Renew every third of the lease for three leases, while another
	// handle keeps trying to take the lock.
	contender := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 3*TTL)
		defer cancel()
		u, err := other.Lock(cctx, name, TTL)
		if err == nil {
			_ = u(ctx)
		}
		contender <- err
	}()
	for range 9 {
		time.Sleep(TTL / 3)
		if err := rl.Renew(ctx, name, token, TTL); err != nil {
			t.Fatalf("Renew of a held lease: %v", err)
		}
	}
	if err := <-contender; err == nil {
		t.Fatalf("another handle took the lock while its holder renewed it every %v (lease %v)", TTL/3, TTL)
	}
	// Renewed again, then released: the release must hold after renewals.
	if err := rl.Renew(ctx, name, token, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantFree(t, other, name, 2*time.Second, "after the renewed lease was released")

	// A renewed lease that is no longer renewed lapses about ttl after
	// its last renewal.
	token, _, err = rl.LockRenewable(ctx, name, TTL)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(TTL / 2)
	if err := rl.Renew(ctx, name, token, TTL); err != nil {
		t.Fatal(err)
	}
	renewed := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 3*TTL)
	defer cancel()
	u, err := other.Lock(wctx, name, TTL)
	if err != nil {
		t.Fatalf("a lease its holder stopped renewing never lapsed: %v", err)
	}
	_ = u(ctx)
	if waited := time.Since(renewed); waited < TTL/2 {
		t.Errorf("the lease lapsed %v after its renewal for %v", waited, TTL)
	}
}

// testRenewLapsed: a lease that lapsed is not brought back by its former
// holder's Renew, nor by a Renew after Unlock.
func testRenewLapsed(t *testing.T, h Harness) {
	s := h.New(t)
	rl := renewable(t, s)
	other := otherHandle(t, h, s)
	ctx := ctxFor(t)
	name := prefix(t) + "lapsed"

	token, _, err := rl.LockRenewable(ctx, name, TTL)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(TTL + 300*time.Millisecond) // lapsed; nobody took it
	wantLost(t, rl.Renew(ctx, name, token, 30*time.Second), "of a lapsed lease")
	wantFree(t, other, name, 500*time.Millisecond, "a Renew after its lease lapsed must not bring it back")

	token, unlock, err := rl.LockRenewable(ctx, name, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantLost(t, rl.Renew(ctx, name, token, 30*time.Second), "after Unlock")
	wantFree(t, other, name, 500*time.Millisecond, "a Renew after Unlock must not take the lock again")
}

// testRenewTakenOver: once another caller took a lapsed lease, the former
// holder's Renew fails and leaves the new holder's lease alone, and a
// token that never held the lock renews nothing.
func testRenewTakenOver(t *testing.T, h Harness) {
	s := h.New(t)
	rl := renewable(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "taken"

	oldToken, _, err := rl.LockRenewable(ctx, name, TTL)
	if err != nil {
		t.Fatal(err)
	}
	otherRL := rl
	if h.Reopen != nil {
		otherRL = renewable(t, h.Reopen(t, s))
	}
	wctx, cancel := context.WithTimeout(ctx, 3*TTL)
	defer cancel()
	newToken, unlockB, err := otherRL.LockRenewable(wctx, name, 2*TTL)
	if err != nil {
		t.Fatalf("Lock after the first lease lapsed: %v", err)
	}
	if newToken == oldToken {
		t.Fatal("two leases on one lock got the same token")
	}
	taken := time.Now()
	wantLost(t, rl.Renew(ctx, name, oldToken, 30*time.Second), "by the holder whose lease was taken over")
	wantLost(t, rl.Renew(ctx, name, "not-a-token-of-this-lock", 30*time.Second), "with a token that never held the lock")
	wantLost(t, rl.Renew(ctx, prefix(t)+"never-locked", oldToken, 30*time.Second), "of a lock never taken")
	// The new holder's 2*TTL lease is neither extended by the failed
	// renewals (it lapses on time) nor cut short.
	wantHeld(t, locker(t, s), name, 2*TTL-time.Since(taken)-300*time.Millisecond, "within the new holder's lease, after failed renewals by others")
	wantFree(t, locker(t, s), name, 2*TTL, "the new holder's lease must lapse on time: a failed Renew must not extend it")
	_ = unlockB(ctx)
}

// testRenewArguments: a non-positive ttl or an invalid name is an error,
// not a renewal.
func testRenewArguments(t *testing.T, h Harness) {
	s := h.New(t)
	rl := renewable(t, s)
	ctx := ctxFor(t)
	name := prefix(t) + "args"
	token, unlock, err := rl.LockRenewable(ctx, name, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unlock(ctx) }()
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := rl.Renew(ctx, name, token, ttl); err == nil {
			t.Errorf("Renew with ttl %v succeeded", ttl)
		}
	}
	if err := rl.Renew(ctx, "", token, time.Second); err == nil {
		t.Error("Renew of an empty name succeeded")
	}
	if _, _, err := rl.LockRenewable(ctx, prefix(t)+"zero", 0); err == nil {
		t.Error("LockRenewable with ttl 0 succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := rl.Renew(cctx, name, token, time.Second); err == nil || errors.Is(err, storage.ErrLeaseLost) {
		t.Errorf("Renew with a cancelled ctx: %v, want a failure (not ErrLeaseLost)", err)
	}
	if err := rl.Renew(ctx, name, token, time.Second); err != nil {
		t.Errorf("Renew of the held lease: %v", err)
	}
}
