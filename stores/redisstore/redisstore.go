package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// DefaultPrefix is the key prefix of a zero Options.
const DefaultPrefix = "ginoauth:"

// Options configure a Store. The zero value is valid.
type Options struct {
	// Prefix is put in front of every key the store uses, so that one
	// Redis database (or cluster) can hold several apps. Default
	// DefaultPrefix. See the package documentation for the keys under it.
	Prefix string
	// Logger receives the failures the store cannot return to a caller.
	// Default: discard (silent, like the rest of the library).
	Logger *slog.Logger
}

// Store is a storage.Store, storage.Taker, storage.Locker and
// storage.Indexer on Redis. It is safe for concurrent use. Create it with
// New. It does not own the client: close the client when you are done.
type Store struct {
	rdb             redis.UniversalClient
	kv, locks, sets string // key prefixes
	log             *slog.Logger

	// wake is closed (and replaced) whenever this Store releases a lock, so
	// that waiters in the same process retry at once instead of at their
	// next poll.
	wakeMu sync.Mutex
	wake   chan struct{}
}

var (
	_ storage.Store   = (*Store)(nil)
	_ storage.Taker   = (*Store)(nil)
	_ storage.Locker  = (*Store)(nil)
	_ storage.Indexer = (*Store)(nil)
)

// New returns a Store on rdb: a *redis.Client, a failover (Sentinel)
// client, or a *redis.ClusterClient, as redis.NewUniversalClient makes
// them. It sends nothing to Redis until the first call.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: nil Redis client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		rdb:   rdb,
		kv:    opts.Prefix + "kv:",
		locks: opts.Prefix + "lock:",
		sets:  opts.Prefix + "set:",
		log:   opts.Logger,
		wake:  make(chan struct{}),
	}, nil
}

// ms rounds d up to whole milliseconds, Redis's finest TTL: rounding down
// could turn a short TTL into 0, which means "never expires".
func ms(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1) / time.Millisecond * time.Millisecond
}

// Get implements storage.Store with GET.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Wrap("get", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound // Set never stores an invalid key
	}
	v, err := s.rdb.Get(ctx, s.kv+key).Bytes()
	return value("get", v, err)
}

// Set implements storage.Store with SET ... PX (a plain SET for ttl 0,
// which also clears an earlier TTL).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return storage.Wrap("set", err)
	}
	if err := storage.ValidateKey(key); err != nil {
		return storage.Wrap("set", err)
	}
	if ttl < 0 {
		return storage.Wrap("set", fmt.Errorf("redisstore: negative ttl %v", ttl))
	}
	if value == nil {
		value = []byte{} // go-redis writes nil as an empty string anyway; say so
	}
	return storage.Wrap("set", s.rdb.Set(ctx, s.kv+key, value, ms(ttl)).Err())
}

// Delete implements storage.Store with DEL.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return storage.Wrap("delete", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil // it cannot exist
	}
	return storage.Wrap("delete", s.rdb.Del(ctx, s.kv+key).Err())
}

// Take implements storage.Taker with GETDEL.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Wrap("take", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	v, err := s.rdb.GetDel(ctx, s.kv+key).Bytes()
	return value("take", v, err)
}

// value maps a GET-like reply to the contract: only redis.Nil (no such
// key) is "not found"; every other error is a failure.
func value(op string, v []byte, err error) ([]byte, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return nil, storage.ErrNotFound
	case err != nil:
		return nil, storage.Wrap(op, err)
	}
	if v == nil {
		v = []byte{} // a stored empty value is a value, not "missing"
	}
	return v, nil
}

// ---- Locker ----

// Lock polling backoff: fast first retries for short critical sections,
// capped so a waiter reacts within ~50ms to a release in another process.
const (
	lockPollMin = 2 * time.Millisecond
	lockPollMax = 50 * time.Millisecond
)

// lockAttemptTimeout bounds one SET NX attempt, which runs detached from
// the caller's cancellation; unlockTimeout bounds an Unlock or a give-back.
const (
	lockAttemptTimeout = 5 * time.Second
	unlockTimeout      = 5 * time.Second
)

// unlockScript deletes the lease only if it still holds the caller's token:
// a GET then DEL from the client could delete a lease that lapsed and was
// taken by someone else in between.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Lock implements storage.Locker with a lease key: SET NX PX with a random
// token, polled until it wins or ctx ends. It returns a *storage.Error
// wrapping ctx's error when ctx ends first, or wrapping the Redis error if
// an attempt fails (it does not retry failures). ttl must be positive and
// name a valid key.
//
// The returned Unlock deletes the lease only if this call still holds it. It
// ignores the cancellation of the ctx it is given (waiting at most 5s), so a
// holder whose request was cancelled still releases the lock at once.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	if ttl <= 0 {
		return nil, storage.Wrap("lock", fmt.Errorf("redisstore: lock ttl must be positive, got %v", ttl))
	}
	if err := storage.ValidateKey(name); err != nil {
		return nil, storage.Wrap("lock", err)
	}
	token, err := newToken()
	if err != nil {
		return nil, storage.Wrap("lock", err)
	}
	key := s.locks + name
	ttl = ms(ttl)
	delay := lockPollMin
	for {
		if err := ctx.Err(); err != nil {
			return nil, storage.Wrap("lock", err)
		}
		wake := s.wakeChan() // before the attempt, so a release in between is not missed
		// Detached from ctx: a SET the client gave up on midway may still
		// run on the server. Letting it finish tells us whether we won.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockAttemptTimeout)
		won, err := s.rdb.SetNX(actx, key, token, ttl).Result()
		cancel()
		if err != nil {
			// A timeout or a lost connection does not say whether the SET
			// ran: give back what it may have taken.
			s.giveBack(ctx, key, token)
			if cerr := ctx.Err(); cerr != nil {
				return nil, storage.Wrap("lock", cerr)
			}
			return nil, storage.Wrap("lock", err)
		}
		if won {
			if err := ctx.Err(); err != nil {
				// The caller gave up while the attempt was in flight: it will
				// never unlock, so the lease must not stay behind.
				s.giveBack(ctx, key, token)
				return nil, storage.Wrap("lock", err)
			}
			return s.unlocker(key, token), nil
		}
		// Jitter keeps waiters in different processes from polling in step.
		t := time.NewTimer(delay/2 + mrand.N(delay)) //nolint:gosec // jitter, not a secret
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, storage.Wrap("lock", ctx.Err())
		case <-wake:
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*3/2, lockPollMax)
	}
}

// giveBack releases a lease this process may hold but nobody will unlock.
// Its failure cannot be returned (the caller already has an error of its
// own), so it is logged; the lease then lapses at the end of its TTL.
func (s *Store) giveBack(ctx context.Context, key, token string) {
	if err := s.unlocker(key, token)(ctx); err != nil {
		s.log.Warn("redisstore: could not give back a lock lease; it lapses at the end of its ttl", "err", err)
	}
}

// unlocker deletes the lease only if this token still holds it, so a
// holder whose lease lapsed cannot release its successor's lock.
func (s *Store) unlocker(key, token string) storage.Unlock {
	return func(ctx context.Context) error {
		if ctx == nil {
			ctx = context.Background()
		}
		// Release even when the caller's request was cancelled: otherwise
		// every other waiter would be held off for the rest of the lease.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		n, err := unlockScript.Run(ctx, s.rdb, []string{key}, token).Int()
		if err != nil {
			return storage.Wrap("lock", err)
		}
		if n > 0 {
			s.wakeMu.Lock()
			close(s.wake)
			s.wake = make(chan struct{})
			s.wakeMu.Unlock()
		}
		return nil
	}
}

func (s *Store) wakeChan() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
