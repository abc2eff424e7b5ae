package gormstore

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Lock polling backoff: fast first retries for short critical sections,
// capped so a waiter reacts within ~50ms to a release in another process.
const (
	lockPollMin = 2 * time.Millisecond
	lockPollMax = 50 * time.Millisecond
)

// unlockTimeout bounds an Unlock that ignores its caller's cancellation.
const unlockTimeout = 5 * time.Second

// lockAttemptTimeout bounds one attempt to take a lease.
const lockAttemptTimeout = 5 * time.Second

// Lock implements storage.Locker with a lease row in the lock table. It
// returns when the lease is taken, or with a *storage.Error wrapping
// ctx's error when ctx ends first, or wrapping the database error if an
// attempt fails (it does not retry failures). ttl must be positive and name
// a valid key.
//
// The returned Unlock deletes the lease only if this call still holds it. It
// ignores the cancellation of the ctx it is given (waiting at most 5s), so a
// holder whose request was cancelled still releases the lock at once.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	_, unlock, err := s.LockRenewable(ctx, name, ttl)
	return unlock, err
}

// LockRenewable implements storage.RenewableLocker: Lock, plus the lease
// row's owner token for Renew.
func (s *Store) LockRenewable(ctx context.Context, name string, ttl time.Duration) (string, storage.Unlock, error) {
	if ttl <= 0 {
		return "", nil, storageErr("lock", fmt.Errorf("gormstore: lock ttl must be positive, got %v", ttl))
	}
	if err := storage.ValidateKey(name); err != nil {
		return "", nil, storageErr("lock", err)
	}
	var tok [16]byte
	if _, err := cryptorand.Read(tok[:]); err != nil {
		return "", nil, storageErr("lock", err)
	}
	owner := hex.EncodeToString(tok[:])
	unlock, err := s.lock(ctx, name, owner, ttl)
	if err != nil {
		return "", nil, err
	}
	return owner, unlock, nil
}

// Renew implements storage.RenewableLocker: one UPDATE of the lease row,
// only while owner token holds it and it has not lapsed (by this Store's
// clock, as Lock judges lapses). It may run twice on a dead connection:
// the second run sets the same expiry.
func (s *Store) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if ttl <= 0 {
		return storageErr("renew", fmt.Errorf("gormstore: lock ttl must be positive, got %v", ttl))
	}
	if err := storage.ValidateKey(name); err != nil {
		return storageErr("renew", err)
	}
	if err := ctx.Err(); err != nil {
		return storageErr("renew", err)
	}
	now := s.opts.Now()
	var renewed bool
	err := s.idempotent(ctx, func() error {
		res := s.db.WithContext(ctx).Exec(s.q.renew, s.d.ts(now.Add(ttl)), name, token, s.d.ts(now))
		renewed = res.RowsAffected > 0
		return res.Error
	})
	switch {
	case err != nil:
		return storageErr("renew", err)
	case !renewed:
		return storage.ErrLeaseLost
	}
	return nil
}

// lock polls for the lease of name until owner holds it or ctx ends.
func (s *Store) lock(ctx context.Context, name, owner string, ttl time.Duration) (storage.Unlock, error) {

	delay := lockPollMin
	for {
		if err := ctx.Err(); err != nil {
			return nil, storageErr("lock", err)
		}
		wake := s.released.Wait() // before the attempt, so a release in between is not missed
		now := s.opts.Now()
		// The attempt is not cancelled with ctx: a statement cancelled
		// midway may still commit on the server after the client gave up,
		// leaving a lease nobody releases. ctx is checked between attempts.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockAttemptTimeout)
		res := s.db.WithContext(actx).Exec(s.q.lock, name, owner, s.d.ts(now.Add(ttl)), s.d.ts(now))
		cancel()
		if res.Error != nil {
			// It may have taken the lease before failing: give it back.
			_ = s.unlocker(name, owner)(context.Background())
			return nil, storageErr("lock", res.Error)
		}
		if res.RowsAffected > 0 {
			unlock := s.unlocker(name, owner)
			if err := ctx.Err(); err != nil {
				_ = unlock(context.Background())
				return nil, storageErr("lock", err)
			}
			return unlock, nil
		}
		// Jitter keeps waiters in different processes from polling in step.
		t := time.NewTimer(delay/2 + rand.N(delay)) //nolint:gosec // jitter, not a secret
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, storageErr("lock", ctx.Err())
		case <-wake:
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*3/2, lockPollMax)
	}
}

// unlocker deletes the lease only if this owner still holds it, so a holder
// whose lease lapsed cannot release its successor's lock.
func (s *Store) unlocker(name, owner string) storage.Unlock {
	return func(ctx context.Context) error {
		if ctx == nil {
			ctx = context.Background()
		}
		// Release even when the caller's request was cancelled: otherwise
		// every other waiter would be held off for the rest of the lease.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		res := s.db.WithContext(ctx).Exec(s.q.unlock, name, owner)
		if res.Error != nil {
			return storageErr("lock", res.Error)
		}
		if res.RowsAffected > 0 {
			s.released.Released()
		}
		return nil
	}
}
