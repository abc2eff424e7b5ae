// Package redisstore is a storage.Store on Redis, written the way an app
// would write its own storage: a reference implementation of the Storage
// contract and of the optional Taker and Locker capabilities, in about a
// hundred lines, with github.com/redis/go-redis/v9.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
//	store := redisstore.New(rdb, redisstore.Options{Prefix: "myapp:"})
//
// How each operation maps to Redis (6.2 or newer, for GETDEL):
//
//   - Get: GET. A missing key (redis.Nil) is storage.ErrNotFound; Redis
//     never returns an expired key, so no expiry check is needed here.
//   - Set: SET key value PX ttl (or EX for whole seconds), or a plain SET for
//     ttl 0. A plain SET also removes any TTL the key had, which is what the
//     contract asks: Set replaces the value and the TTL in one step.
//     KEEPTTL is deliberately not used: a caller that wants to keep a
//     record's expiry (the indigo adapter, when it saves rotated tokens)
//     computes the remaining TTL itself and passes it.
//   - Delete: DEL (deleting a missing key is not an error, as in Redis).
//   - Take (storage.Taker): GETDEL, atomic on the server, so exactly one of
//     several concurrent takers, on any number of app instances, gets the
//     value.
//   - Lock (storage.Locker): SET name token NX PX ttl with a random token,
//     retried with a short backoff while someone else holds the lock.
//     Unlock runs a Lua script that deletes the key only if it still holds
//     this caller's token, so an Unlock after the lease lapsed cannot
//     release the next holder's lock. This is the single-instance Redis
//     lock; it is as available as the Redis server itself.
//
// Every failure other than a missing key is returned as a
// *storage.Error, so the library answers 503 instead of treating
// an outage as "logged out".
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Options configure a Store.
type Options struct {
	// Prefix is put in front of every Redis key, so that one Redis database
	// can hold several apps. Default "ginoauth:". Entries live under
	// Prefix+"kv:" and locks under Prefix+"lock:".
	Prefix string
}

// Store is a storage.Store, storage.Taker and storage.Locker on Redis.
// It is safe for concurrent use. It does not own the client: close the
// client when you are done.
type Store struct {
	rdb    redis.UniversalClient
	kv     string // key prefix of entries
	locks  string // key prefix of locks
	unlock *redis.Script
}

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Taker  = (*Store)(nil)
	_ storage.Locker = (*Store)(nil)
)

// unlockScript deletes the lock only if it still holds the caller's token:
// a GET then DEL from the client could delete a lock that lapsed and was
// taken by someone else in between.
const unlockScript = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`

// New returns a Store on rdb (a *redis.Client, *redis.ClusterClient or
// *redis.Ring).
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "ginoauth:"
	}
	return &Store{rdb: rdb, kv: opts.Prefix + "kv:", locks: opts.Prefix + "lock:", unlock: redis.NewScript(unlockScript)}
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fail("get", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound // Set never stores an invalid key
	}
	v, err := s.rdb.Get(ctx, s.kv+key).Bytes()
	return value(v, err, "get")
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail("set", err)
	}
	if err := storage.ValidateKey(key); err != nil {
		return fail("set", err)
	}
	if ttl < 0 {
		return fail("set", fmt.Errorf("negative ttl %v", ttl))
	}
	if ttl > 0 && ttl < time.Millisecond {
		ttl = time.Millisecond // Redis's finest TTL; never round a TTL down to "forever"
	}
	// ttl 0 is a plain SET, which also clears an earlier TTL.
	return fail("set", s.rdb.Set(ctx, s.kv+key, value, ttl).Err())
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail("delete", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil // it cannot exist
	}
	return fail("delete", s.rdb.Del(ctx, s.kv+key).Err())
}

// Take implements storage.Taker with GETDEL.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fail("take", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	v, err := s.rdb.GetDel(ctx, s.kv+key).Bytes()
	return value(v, err, "take")
}

// Lock implements storage.Locker.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	if err := storage.ValidateKey(name); err != nil {
		return nil, fail("lock", err)
	}
	if ttl < time.Millisecond {
		return nil, fail("lock", fmt.Errorf("lock lease %v is shorter than a millisecond", ttl))
	}
	key := s.locks + name
	token, err := newToken()
	if err != nil {
		return nil, fail("lock", err)
	}
	wait := 2 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // the contract: ctx's own error
		}
		ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, fail("lock", err)
		}
		if ok {
			// Unlock deletes the lock if it still holds our token. If it does
			// not (released already, or the lease lapsed and maybe someone
			// else holds it now), there is nothing of ours to release.
			return func(ctx context.Context) error {
				return fail("unlock", s.unlock.Run(ctx, s.rdb, []string{key}, token).Err())
			}, nil
		}
		// Held by someone else: poll with a growing, bounded backoff.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// value maps a GET-like reply to the Storage contract.
func value(v []byte, err error, op string) ([]byte, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return nil, storage.ErrNotFound
	case err != nil:
		return nil, fail(op, err)
	}
	if v == nil {
		v = []byte{} // a stored empty value is a value, not "missing"
	}
	return v, nil
}

// fail wraps a Redis failure as a *storage.Error (nil stays nil).
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	return &storage.Error{Op: op, Err: err}
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
