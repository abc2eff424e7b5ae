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

// DefaultLeaseAckTimeout is the default Options.LeaseAckTimeout.
const DefaultLeaseAckTimeout = time.Second

// maxLeaseAckTimeout keeps the replicas' wait inside one lock attempt's
// bound (lockAttemptTimeout), with room for the commands around it.
const maxLeaseAckTimeout = 4 * time.Second

// ErrLeaseNotReplicated is wrapped by the *storage.Error that Lock returns
// when the replicas of the lease's primary did not acknowledge a new lease
// within Options.LeaseAckTimeout. The lease has been given back: a failover
// could have lost it, and a second holder would then refresh the same
// token. The library answers it with 503, like any storage failure.
var ErrLeaseNotReplicated = errors.New("redisstore: the replicas did not acknowledge the lock lease in time")

// Options configure a Store. The zero value is valid.
type Options struct {
	// Prefix is put in front of every key the store uses, so that one
	// Redis database (or cluster) can hold several apps. Default
	// DefaultPrefix. See the package documentation for the keys under it.
	Prefix string
	// Logger receives the failures the store cannot return to a caller.
	// Default: discard (silent, like the rest of the library).
	Logger *slog.Logger
	// LeaseAckTimeout bounds how long Lock waits for the replicas connected
	// to a new lease's primary to acknowledge it (Redis WAIT), so that a
	// failover cannot lose it; see "Failover" in the package documentation.
	// A primary without replicas (a single server) is not waited for.
	// Default DefaultLeaseAckTimeout; at most 4s.
	LeaseAckTimeout time.Duration
	// UnreplicatedLeases makes Lock return a lease as soon as its primary
	// has it, without waiting for any replica: one round trip less per
	// Lock, and a lease that a failover right after it can lose.
	UnreplicatedLeases bool
}

// Store is a storage.Store, storage.Taker, storage.Locker and
// storage.Indexer on Redis. It is safe for concurrent use. Create it with
// New. It does not own the client: close the client when you are done.
type Store struct {
	rdb             redis.UniversalClient
	kv, locks, sets string // key prefixes
	log             *slog.Logger

	// detach is set when the client ignores context deadlines: each call
	// then runs in a goroutine of its own and returns at its context's end.
	detach bool
	// ackTimeout bounds the replicas' acknowledgement of a lease; 0: none
	// is waited for (Options.UnreplicatedLeases).
	ackTimeout time.Duration

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
//
// Every call ends when its context does, whichever client rdb is. Build it
// with ContextTimeoutEnabled: without it, go-redis bounds a command only by
// its ReadTimeout and WriteTimeout, and the store then runs each call in a
// goroutine of its own to return at the context's end (see "Deadlines" in
// the package documentation).
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
	switch {
	case opts.LeaseAckTimeout < 0 || opts.LeaseAckTimeout > maxLeaseAckTimeout:
		return nil, fmt.Errorf("redisstore: Options.LeaseAckTimeout must be between 0 (default %v) and %v, got %v",
			DefaultLeaseAckTimeout, maxLeaseAckTimeout, opts.LeaseAckTimeout)
	case opts.LeaseAckTimeout > 0 && opts.LeaseAckTimeout < time.Millisecond:
		// WAIT counts whole milliseconds, and WAIT 0 would wait forever.
		return nil, fmt.Errorf("redisstore: Options.LeaseAckTimeout must be at least 1ms, got %v", opts.LeaseAckTimeout)
	case opts.LeaseAckTimeout == 0:
		opts.LeaseAckTimeout = DefaultLeaseAckTimeout
	}
	s := &Store{
		rdb:        rdb,
		kv:         opts.Prefix + "kv:",
		locks:      opts.Prefix + "lock:",
		sets:       opts.Prefix + "set:",
		log:        opts.Logger,
		detach:     !honoursDeadlines(rdb),
		ackTimeout: ms(opts.LeaseAckTimeout),
		wake:       make(chan struct{}),
	}
	if opts.UnreplicatedLeases {
		s.ackTimeout = 0
	}
	if s.detach {
		s.log.Warn("redisstore: the Redis client ignores context deadlines (ContextTimeoutEnabled is off); " +
			"each call runs in a goroutine of its own so that it still ends with its context")
	}
	return s, nil
}

// honoursDeadlines reports whether go-redis bounds rdb's commands by their
// context's deadline, which it does only with ContextTimeoutEnabled. The
// interfaces match go-redis's clients and anything embedding one; a client
// that says nothing is assumed not to.
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case interface{ Options() *redis.Options }: // *redis.Client, failover clients
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	case interface{ Options() *redis.ClusterOptions }:
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	case interface{ Options() *redis.RingOptions }:
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	}
	return false
}

// result is what a call returns, through a channel when it runs detached.
type result[T any] struct {
	v   T
	err error
}

// call runs fn, which sends commands on s.rdb with ctx, and makes sure it
// returns by the end of ctx. On a client that honours deadlines (or with a
// ctx that never ends) that is fn itself. Otherwise fn runs in a goroutine
// of its own: the caller gets ctx's error at ctx's end, and the goroutine
// finishes when the client gives up by its own ReadTimeout/WriteTimeout or
// Redis answers. Its result is then dropped: an operation whose caller got
// an error may still have happened, as with any timeout.
func call[T any](s *Store, ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	if !s.detach || ctx.Done() == nil {
		v, err := fn(ctx)
		return v, deadlineErr(ctx, err)
	}
	done := make(chan result[T], 1) // buffered: the goroutine never blocks on an abandoned call
	go func() {
		v, err := fn(ctx)
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.v, deadlineErr(ctx, r.err)
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// deadlineErr says that a command failed because its context ended (which
// go-redis reports as a network timeout), so that callers can tell.
func deadlineErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// callErr is call for a command without a value.
func callErr(s *Store, ctx context.Context, fn func(context.Context) error) error {
	_, err := call(s, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
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
	v, err := call(s, ctx, func(ctx context.Context) ([]byte, error) { return s.rdb.Get(ctx, s.kv+key).Bytes() })
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
	return storage.Wrap("set", callErr(s, ctx, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.kv+key, value, ms(ttl)).Err()
	}))
}

// Delete implements storage.Store with DEL.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return storage.Wrap("delete", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil // it cannot exist
	}
	return storage.Wrap("delete", callErr(s, ctx, func(ctx context.Context) error { return s.rdb.Del(ctx, s.kv+key).Err() }))
}

// Take implements storage.Taker with GETDEL.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Wrap("take", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	v, err := call(s, ctx, func(ctx context.Context) ([]byte, error) { return s.rdb.GetDel(ctx, s.kv+key).Bytes() })
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

// leaseScript takes the lease KEYS[1] for token ARGV[1] and ARGV[2]
// milliseconds unless another token holds it, and returns {won, replicas}:
// with ARGV[3] "1", replicas is the number of replicas online on this
// primary, which Lock then waits for. It sets the lease again when it holds
// this token already: an attempt that go-redis retried after its first try
// won still wins, and the lease is a write of this connection, which is
// what WAIT waits for.
var leaseScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v and v ~= ARGV[1] then
	return {0, 0}
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
local replicas = 0
if ARGV[3] == "1" then
	for _ in string.gmatch(redis.call("INFO", "replication"), "state=online") do
		replicas = replicas + 1
	end
end
return {1, replicas}`)

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
		won, err := call(s, actx, func(actx context.Context) (bool, error) { return s.attempt(actx, key, token, ttl) })
		cancel()
		if err != nil {
			// A timeout or a lost connection does not say whether the SET
			// ran, and an unacknowledged lease must not be used: give back
			// what it may have taken. The error names the caller's
			// cancellation if there was one, and the attempt's failure.
			s.giveBack(ctx, key, token)
			return nil, storage.Wrap("lock", deadlineErr(ctx, err))
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

// attempt tries once to take the lease and reports whether token holds it.
// Unless leases are unreplicated, it runs on one connection to the key's
// primary (go-redis's Watch picks it, following a cluster redirect), so
// that WAIT there covers the lease's write: WAIT sent on its own would go
// to another connection, or, on a cluster client, to every primary. A
// lease that the primary's online replicas did not all acknowledge is an
// ErrLeaseNotReplicated failure, which Lock gives back.
func (s *Store) attempt(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	ttlMs := ttl.Milliseconds()
	if s.ackTimeout == 0 {
		res, err := leaseScript.Run(ctx, s.rdb, []string{key}, token, ttlMs, "0").Int64Slice()
		if err != nil {
			return false, err
		}
		return len(res) == 2 && res[0] == 1, nil
	}
	won := false
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		res, err := leaseScript.Run(ctx, tx, []string{key}, token, ttlMs, "1").Int64Slice()
		if err != nil {
			return err
		}
		if len(res) != 2 {
			return fmt.Errorf("redisstore: unexpected lease script reply %v", res)
		}
		won = res[0] == 1
		if !won || res[1] == 0 {
			return nil // lost, or a primary without replicas: nothing to wait for
		}
		acked, err := tx.Wait(ctx, int(res[1]), s.ackTimeout).Result()
		if err != nil {
			return err
		}
		if acked < res[1] {
			return fmt.Errorf("%w (%d of %d within %v)", ErrLeaseNotReplicated, acked, res[1], s.ackTimeout)
		}
		return nil
	}, key)
	return won, err
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
		n, err := call(s, ctx, func(ctx context.Context) (int, error) {
			return unlockScript.Run(ctx, s.rdb, []string{key}, token).Int()
		})
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
