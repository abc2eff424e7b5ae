package storage

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is what RenewableLocker.Renew returns, possibly wrapped,
// when the caller no longer holds the lease it tries to renew: it lapsed,
// was released, or another caller took it. Test for it with errors.Is.
var ErrLeaseLost = errors.New("storage: lease lost")

// RenewableLocker is an optional Locker capability: a lease its holder can
// extend while it works. The library holds its token-refresh and device
// locks with a short lease that it renews every third of it, so that a
// holder that crashes blocks the lock for seconds instead of the length of
// the longest piece of work it might do. Stores without it keep the long
// leases of Locker.
//
// The contract, which the storagetest package checks (Lock/Renew...
// checks), on top of Locker's:
//
//   - LockRenewable is Lock (same waiting, cancellation and ttl rules, same
//     Unlock) that also returns the lease's token: an opaque, unguessable
//     string naming this holder's hold on this lock. It is valid until the
//     lease lapses or is released; a later lease on the same name, by
//     anyone, has another token.
//   - Renew makes the lease on name held under token expire ttl from now,
//     and returns nil, only if token holds a live lease on name at that
//     moment. A lease that lapsed (even if nobody took it since), was
//     released, or was taken by another caller, and a token that never
//     held name, give an error wrapping ErrLeaseLost and change nothing:
//     Renew never takes a lock, never brings a lapsed lease back and
//     never touches another holder's lease.
//   - Any other error is a failure: the lease may or may not have been
//     extended. The caller counts its lease as lasting ttl from the start
//     of its last successful Renew (or of the LockRenewable call), and
//     must stop working under the lock before then.
//   - ttl must be positive, and name follow the key rules (ValidateKey);
//     anything else is an error. ctx cancellation is honoured; a Renew
//     cancelled midway may or may not have extended the lease.
//   - The Unlock returned by LockRenewable releases the lease, however
//     often it was renewed, only while token holds it.
type RenewableLocker interface {
	Locker
	LockRenewable(ctx context.Context, name string, ttl time.Duration) (token string, unlock Unlock, err error)
	Renew(ctx context.Context, name, token string, ttl time.Duration) error
}
