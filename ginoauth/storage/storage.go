// Package storage is the contract between the library and the database it
// keeps its state in: a key-value Store with TTLs, and the optional
// capabilities that make several app instances safe (Taker, Locker and
// RenewableLocker, Indexer), let sessions slide safely (Swapper) or let
// session checks read from a replica (StaleReader).
//
// The contract grows only by optional capabilities: each is an interface
// of its own that the library finds by type assertion, never a new method
// on Store or on an existing capability, so a store written against an
// earlier version still compiles and still means what it meant. Each
// capability's contract is written on its interface, and storagetest
// checks it for every store that has it (with mutant stores, each with one
// typical bug, that the checks must catch).
//
// It imports nothing but the standard library, so a store for your own
// database (and its tests, with ginoauth/storagetest) links only what that
// store needs: no web framework, no OAuth client. The stores in the stores
// directory implement it; ginoauth.Config.Storage takes any of them.
package storage

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrNotFound is what a Store returns, possibly wrapped, when a key does not
// exist or its TTL has passed. Test for it with errors.Is.
var ErrNotFound = errors.New("storage: key not found")

// Store is the key-value store the library keeps all server-side state in:
// login flows, per-device session records and (through the indigo adapter)
// the OAuth tokens.
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
//   - Any error other than ErrNotFound means the store could not answer (a
//     system failure). The library reports those as *Error (HTTP 503) and
//     never mistakes them for "not found", so a database outage does not
//     silently log users out.
//   - Keys are non-empty UTF-8 strings of at most MaxKeyLength bytes and
//     contain no NUL byte (see ValidateKey). Values are opaque bytes (the
//     library stores JSON). Implementations must accept values of at least
//     64 KiB.
//   - Implementations are safe for concurrent use, honour ctx cancellation,
//     do not keep or modify the value slice passed to Set, and return a slice
//     from Get that the caller owns.
//
// Optional capabilities are separate interfaces found by type assertion:
// Taker (atomic read-and-delete), Locker (a lock shared by every process
// that uses the same store), RenewableLocker (a Locker whose holder can
// extend its lease, so that leases can be short), Indexer (sets of members, for the
// per-account index of sessions), Swapper (compare-and-swap, to extend a
// session without bringing back one ended meanwhile), StaleReader (reads
// that a replica may answer, within a staleness bound) and Counter (atomic
// counters with a TTL, for rate limits shared across instances).
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// MaxKeyLength is the longest key a Store must accept, in bytes.
const MaxKeyLength = 1024

// Taker is an optional Store capability: Take reads and deletes key in one
// atomic step. Among any number of concurrent Takes of the same key, from any
// number of processes, exactly one receives the value; the others get
// ErrNotFound. The library uses it to consume one-time records (login flows,
// pending authorizations) so that a replayed request finds nothing.
type Taker interface {
	Take(ctx context.Context, key string) ([]byte, error)
}

// Locker is an optional Store capability: a named mutual-exclusion lock that
// holds across every process sharing the store. The library uses it so that
// only one app instance at a time refreshes a given OAuth session (refresh
// tokens are single use).
//
// Lock blocks until the caller holds the lock called name, or until ctx ends
// (then it returns an error wrapping ctx's error). A caller that gives up
// must leave no lease behind, even if it gave up while its attempt was in
// flight. The lock is a lease: it lapses by itself ttl after it was taken,
// so a crashed holder cannot block others for longer than that; holders must
// finish their critical section well within ttl. The returned Unlock releases
// the lock if this caller still holds it; calling it after the lease lapsed
// and someone else took the lock must not release the other holder's lock.
type Locker interface {
	Lock(ctx context.Context, name string, ttl time.Duration) (Unlock, error)
}

// Unlock releases a lock taken with Locker.Lock.
type Unlock func(ctx context.Context) error

// Indexer is an optional Store capability: named sets of members, each
// member with an expiry of its own. The library keeps one set per account,
// holding a member per device session, so that it can list an account's
// sessions and end them all ("log out everywhere"), across instances.
//
// Every operation is atomic on its own and independent of other members,
// so concurrent logins and logouts on any number of instances never lose
// an addition or undo a removal (no read-modify-write of a whole set):
//
//   - AddMember puts member in set, or renews it: it expires ttl from now
//     (ttl == 0: never; ttl < 0 is an error).
//   - RemoveMember takes member out of set; a member that is not there is
//     not an error.
//   - Members returns set's members whose expiry has not passed, in any
//     order; an empty or unknown set gives none and a nil error. Expired
//     members must be invisible whether or not a cleanup has run.
//
// Set names and members follow the key rules (ValidateKey). Failures are
// system failures, as for Store.
type Indexer interface {
	AddMember(ctx context.Context, set, member string, ttl time.Duration) error
	RemoveMember(ctx context.Context, set, member string) error
	Members(ctx context.Context, set string) ([]string, error)
}

// StaleReader is an optional Store capability: a Get that a replica of the
// store may answer, one that lags behind the primary by at most the bound
// MaxStaleness returns. It lets the session check of every request be
// served by read replicas while everything else stays on the primary.
//
// The contract, which the storagetest package checks (Stale/ checks):
//
//   - A value GetStale returns was the live value of key on the primary at
//     some moment no earlier than MaxStaleness before the call. So a Delete
//     or Set that returned more than MaxStaleness before the call, on any
//     handle in any process, is never undone: the deleted key is not
//     found, the replaced value is not returned. Within the bound an older
//     value may be returned.
//   - ErrNotFound means the primary has no live entry: a miss on a replica
//     is read again from the primary, so a key Set before the call is
//     found even if no replica has it yet (read-your-writes for new keys).
//   - When the store cannot tell that a replica is within the bound (its
//     lag is unknown or past the bound, or the replica fails), it reads
//     the primary. Measure lag by replication progress (WAL positions, or
//     a heartbeat row the primary updates), never by the time since the
//     last change was applied: that grows on an idle primary whose
//     replicas are fully caught up.
//   - Expired entries are invisible as for Get, judged by the time of the
//     call, whichever copy answers.
//   - Everything else is as for Get: errors (a failure, including one of
//     the replica that the primary could not make up for, is never
//     ErrNotFound), key rules, ctx, value ownership, concurrency.
//   - MaxStaleness is at least 0 and fixed for the store's life; 0 makes
//     GetStale the same as Get.
//
// The library calls GetStale only for the session check's read of a
// device-session record. OAuth tokens (a stale refresh token means a
// replayed one, which ends the session), locks, one-time records (Take),
// set members and every write go to the primary through the other
// methods. A caller that would write because of a GetStale answer (renew,
// delete) reads the key again with Get first: a stale value may be older
// than what the primary holds.
type StaleReader interface {
	GetStale(ctx context.Context, key string) ([]byte, error)
	MaxStaleness() time.Duration
}

// GetStale reads key through s's StaleReader when it has one, and with Get
// otherwise. Failures are *Error.
func GetStale(ctx context.Context, s Store, key string) ([]byte, error) {
	if r, ok := s.(StaleReader); ok {
		raw, err := r.GetStale(ctx, key)
		return raw, Wrap("get-stale", err)
	}
	raw, err := s.Get(ctx, key)
	return raw, Wrap("get", err)
}

// ValidateKey reports whether key satisfies the key rules (non-empty, valid
// UTF-8, at most MaxKeyLength bytes, no NUL). Stores may use it to reject
// bad keys before they reach the backing store.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("storage: empty key")
	case len(key) > MaxKeyLength:
		return errors.New("storage: key longer than MaxKeyLength")
	case !utf8.ValidString(key):
		return errors.New("storage: key is not valid UTF-8")
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return errors.New("storage: key contains NUL")
		}
	}
	return nil
}

// Error reports that a Store failed to answer (not a "not found"). The
// library answers it with 503.
type Error struct {
	Op  string // "get", "get-stale", "set", "delete", "take", "lock", "renew", "add-member", "remove-member", "members", "swap", "incr" or "cleanup"
	Err error
}

func (e *Error) Error() string {
	msg := "storage " + e.Op + " failed"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is 503 (Service Unavailable).
func (e *Error) HTTPStatus() int { return 503 }

// Wrap leaves nil and ErrNotFound alone and turns every other error into an
// *Error with Op op (unless it already is one), so that a failure is never
// mistaken for "not found".
func Wrap(op string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) {
		return err
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	return &Error{Op: op, Err: err}
}

// Take consumes key: atomically through s's Taker when it has one. Without
// one it falls back to Get then Delete under a lock of this process, which
// is single use within one process but not across several; deployments with
// several instances need a Store with Taker. Failures are *Error.
func Take(ctx context.Context, s Store, key string) ([]byte, error) {
	if t, ok := s.(Taker); ok {
		raw, err := t.Take(ctx, key)
		return raw, Wrap("take", err)
	}
	mu := emulatedTakes.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	raw, err := s.Get(ctx, key)
	if err != nil {
		return nil, Wrap("take", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		return nil, Wrap("take", err)
	}
	return raw, nil
}

// emulatedTakes serialises Get+Delete per key (striped, so memory stays
// bounded).
var emulatedTakes stripes

type stripes [64]sync.Mutex

func (s *stripes) forKey(key string) *sync.Mutex {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &s[h%uint32(len(s))]
}
