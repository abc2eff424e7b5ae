package ginoauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"sync"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The device lock serialises every change to one device session: a native
// app's token rotation, the write of scopes a refresh changed, and its end.
// It is named after the login, not after a token, so that a token and its
// rotated-out predecessor share it: rotations of either, and a logout with
// either, never run at once, on any instance sharing the store.
//
// It is the Storage's storage.Locker when it has one (every store in the
// stores directory does); otherwise a lock of this process, which
// serialises one instance only (New logs a warning).

// deviceLockWait bounds the wait for a device lock: a request that cannot
// get it in time answers 503 and changes nothing.
const deviceLockWait = 20 * time.Second

// deviceLockLease is the lease on a device lock, so a crashed holder blocks
// the device for no longer. A holder finishes well within it: a rotation
// waits at most rotationRefreshWait for the refresh lock, then the
// client's own budgets (15 s for the refresh, 8 s for the save), then a
// few storage operations, each bounded by Config.StorageTimeout.
func (ds *deviceSessions) deviceLockLease() time.Duration {
	return 60*time.Second + 6*ds.timeout
}

// deviceLockName is the lock of the login rec belongs to: the account, its
// OAuth session and its creation time, which a rotation hands on unchanged.
func deviceLockName(rec *sessionRecord) string {
	sum := sha256.Sum256([]byte(rec.DID + " " + rec.OAuthSessionID + " " + strconv.FormatInt(rec.CreatedAt.UnixNano(), 10)))
	return "device:" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// lockDevice takes the device lock of rec's login and returns its release.
// A failure is a *storage.Error (503): nothing was changed.
func (ds *deviceSessions) lockDevice(ctx context.Context, rec *sessionRecord) (release func(), err error) {
	return ds.lockNamed(ctx, deviceLockName(rec), ds.deviceLockLease())
}

// lockNamed takes the named lock (the Storage's, or this process's) for at
// most lease, waiting at most deviceLockWait.
func (ds *deviceSessions) lockNamed(ctx context.Context, name string, lease time.Duration) (release func(), err error) {
	wctx, cancel := context.WithTimeout(ctx, deviceLockWait)
	defer cancel()
	var unlock storage.Unlock
	if l, ok := ds.store.(storage.Locker); ok {
		unlock, err = l.Lock(wctx, name, lease)
	} else {
		unlock, err = ds.localLocks.lock(wctx, name)
	}
	if err != nil {
		return nil, storageFailed(ds.metrics, "lock", err)
	}
	return func() {
		// The request may be over; the lease lapses by itself if this fails.
		uctx, cancel := context.WithTimeout(context.Background(), ds.timeout)
		defer cancel()
		if err := unlock(uctx); err != nil {
			ds.log.Warn("releasing a device lock failed; it lapses with its lease", "err", err)
		}
	}, nil
}

// processLocks are named locks of this process, honouring ctx, for a
// Storage without a storage.Locker. Entries go when nobody holds or waits.
type processLocks struct {
	mu      sync.Mutex
	entries map[string]*processLock
}

type processLock struct {
	ch    chan struct{}
	users int // holders and waiters
}

func (l *processLocks) lock(ctx context.Context, name string) (storage.Unlock, error) {
	l.mu.Lock()
	if l.entries == nil {
		l.entries = map[string]*processLock{}
	}
	e, ok := l.entries[name]
	if !ok {
		e = &processLock{ch: make(chan struct{}, 1)}
		l.entries[name] = e
	}
	e.users++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if e.users--; e.users == 0 {
			delete(l.entries, name)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func(context.Context) error {
			once.Do(func() { <-e.ch; done() })
			return nil
		}, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
