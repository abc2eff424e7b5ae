package ginoauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// The device lock serialises every change to one device session: a native
// app's token rotation, the write of scopes a refresh changed, and its end.
// It is named after the login, not after a token, so that a token and its
// rotated-out predecessor share it: rotations of either, and a logout with
// either, never run at once, on any instance sharing the store.
//
// It is the Storage's storage.Locker when it has one (every store in the
// stores directory does), a short lease renewed while the holder works
// when it is a storage.RenewableLocker; otherwise a lock of this process,
// which serialises one instance only (New logs a warning).

// deviceLockWait bounds the wait for a device lock: a request that cannot
// get it in time answers 503 and changes nothing.
const deviceLockWait = 20 * time.Second

// deviceLockLease is the longest hold of a device lock, and its lease on a
// Storage without storage.RenewableLocker, so a crashed holder blocks the
// device for no longer there. A holder finishes well within it: a
// rotation waits at most rotationRefreshWait for the refresh lock, then
// the client's own budgets (15 s for the refresh, 8 s for the save), then
// a few storage operations, each bounded by Config.StorageTimeout.
func (ds *deviceSessions) deviceLockLease() time.Duration {
	return 60*time.Second + 6*ds.timeout
}

// renewedLockLease is the lease on a device (or code) lock when the
// Storage can renew it (storage.RenewableLocker): renewed every third of
// it while the holder works, so a crashed holder blocks the device, on
// every instance, for at most this long.
const renewedLockLease = 6 * time.Second

// deviceLockName is the lock of the login rec belongs to: the account, its
// OAuth session and its creation time, which a rotation hands on unchanged.
func deviceLockName(rec *sessionRecord) string {
	sum := sha256.Sum256([]byte(rec.DID + " " + rec.OAuthSessionID + " " + strconv.FormatInt(rec.CreatedAt.UnixNano(), 10)))
	return "device:" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// lockDevice takes the device lock of rec's login. The holder works on
// the returned context, which ends when ctx does and before the lock's
// lease could lapse (storage failing to renew it), so that it never
// writes after another instance could have taken the lock; release
// releases the lock. A failure is a *storage.Error (503): nothing was
// changed.
func (ds *deviceSessions) lockDevice(ctx context.Context, rec *sessionRecord) (context.Context, func(), error) {
	return ds.lockNamed(ctx, deviceLockName(rec), ds.deviceLockLease())
}

// lockNamed takes the named lock (the Storage's, or this process's), held
// for at most maxHold, waiting at most deviceLockWait; see lockDevice.
func (ds *deviceSessions) lockNamed(ctx context.Context, name string, maxHold time.Duration) (context.Context, func(), error) {
	wctx, cancel := context.WithTimeout(ctx, deviceLockWait)
	defer cancel()
	var held *lease.Held
	var err error
	if l, ok := ds.store.(storage.Locker); ok {
		held, err = lease.Take(wctx, l, name, lease.Policy{TTL: ds.lockLease, Max: maxHold})
	} else {
		var unlock storage.Unlock
		if unlock, err = ds.localLocks.Lock(wctx, name); err == nil {
			held = lease.Local(unlock)
		}
	}
	if err != nil {
		return nil, nil, storageFailed(ds.metrics, "lock", err)
	}
	work, stopWork := held.Bind(ctx)
	return work, func() {
		stopWork()
		// The request may be over; the lease lapses by itself if this fails.
		uctx, cancel := context.WithTimeout(context.Background(), ds.timeout)
		defer cancel()
		if err := held.Unlock(uctx); err != nil {
			ds.log.Warn("releasing a device lock failed; it lapses with its lease", "err", err)
		}
	}, nil
}
