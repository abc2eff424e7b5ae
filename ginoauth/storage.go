package ginoauth

import (
	"context"
	"errors"
	"time"
	"unicode/utf8"
)

// ErrNotFound is what a Storage returns, possibly wrapped, when a key does not
// exist or its TTL has passed. Test for it with errors.Is.
var ErrNotFound = errors.New("ginoauth: key not found")

// Storage is the key-value store the library keeps all server-side state in:
// login flows, per-device session records and (through the indigo adapter)
// the OAuth tokens. Bring your own, or use one from the stores packages.
//
// The contract, which the storagetest package checks:
//
//   - Get returns the value stored under key. A key that was never set, was
//     deleted, or whose TTL has passed gives ErrNotFound (errors.Is) and no
//     value. Expired entries must be invisible to Get even if they have not
//     been removed from the backing store yet: correctness never depends on a
//     cleanup job.
//   - Set stores value under key, replacing any earlier value and TTL in one
//     atomic step (an upsert, never read-then-write). ttl > 0 makes the entry
//     expire after ttl; ttl == 0 means it never expires; ttl < 0 is an error.
//   - Delete removes key. Deleting a key that does not exist is not an error.
//   - Any error other than ErrNotFound means the storage could not answer (a
//     system failure). The library reports those as [StorageError] (HTTP 503)
//     and never mistakes them for "not found", so a database outage does not
//     silently log users out.
//   - Keys are non-empty UTF-8 strings of at most [MaxKeyLength] bytes and
//     contain no NUL byte. Values are opaque bytes (the library stores JSON).
//     Implementations must accept values of at least 64 KiB.
//   - Implementations are safe for concurrent use, honour ctx cancellation,
//     do not keep or modify the value slice passed to Set, and return a slice
//     from Get that the caller owns.
//
// Optional capabilities are separate interfaces found by type assertion:
// [Taker] (atomic read-and-delete) and [Locker] (a lock shared by every
// process that uses the same storage).
type Storage interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// MaxKeyLength is the longest key a Storage must accept, in bytes.
const MaxKeyLength = 1024

// Taker is an optional Storage capability: Take reads and deletes key in one
// atomic step. Among any number of concurrent Takes of the same key, from any
// number of processes, exactly one receives the value; the others get
// ErrNotFound. The library uses it to consume one-time records (login flows,
// mobile exchange codes) so that a replayed request finds nothing.
//
// A Storage without Taker still works: the library then falls back to Get
// followed by Delete under a process-local mutex, which is single-use within
// one process but not across several. Multi-instance deployments should use a
// Storage that implements Taker.
type Taker interface {
	Take(ctx context.Context, key string) ([]byte, error)
}

// Locker is an optional Storage capability: a named mutual-exclusion lock that
// holds across every process sharing the storage. The library uses it so that
// only one app instance at a time refreshes a given OAuth session (refresh
// tokens are single use).
//
// Lock blocks until the caller holds the lock called name, or until ctx ends
// (then it returns ctx's error). The lock is a lease: it lapses by itself ttl
// after it was taken, so a crashed holder cannot block others for longer than
// that; holders must finish their critical section well within ttl. The
// returned Unlock releases the lock if this caller still holds it; calling it
// after the lease lapsed and someone else took the lock must not release the
// other holder's lock.
type Locker interface {
	Lock(ctx context.Context, name string, ttl time.Duration) (Unlock, error)
}

// Unlock releases a lock taken with [Locker.Lock].
type Unlock func(ctx context.Context) error

// ValidateKey reports whether key satisfies the Storage key rules (non-empty,
// valid UTF-8, at most MaxKeyLength bytes, no NUL). Store implementations may use it to
// reject bad keys before they reach the backing store.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("ginoauth: empty storage key")
	case len(key) > MaxKeyLength:
		return errors.New("ginoauth: storage key longer than MaxKeyLength")
	case !utf8.ValidString(key):
		return errors.New("ginoauth: storage key is not valid UTF-8")
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return errors.New("ginoauth: storage key contains NUL")
		}
	}
	return nil
}
