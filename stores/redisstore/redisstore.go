package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// DefaultPrefix is the key prefix of a zero Options.
const DefaultPrefix = "ginoauth:"

// DefaultAckTimeout is the default Options.AckTimeout.
const DefaultAckTimeout = time.Second

// maxAckTimeout keeps the replicas' wait inside one lock attempt's bound
// (lockAttemptTimeout), with room for the commands around it.
const maxAckTimeout = 4 * time.Second

// Options configure a Store. The zero value is valid.
type Options struct {
	// Prefix is put in front of every key the store uses, so that one
	// Redis database (or cluster) can hold several apps. Default
	// DefaultPrefix. See the package documentation for the keys under it.
	Prefix string
	// Logger receives the failures the store cannot return to a caller,
	// and one warning from New about a client that ignores context
	// deadlines. Default: discard (silent, like the rest of the library).
	Logger *slog.Logger
	// Writes says whether writes wait for the replicas of their primary
	// to acknowledge them (Redis WAIT) before they count as done, so that a
	// failover cannot lose them; see "Failover" in the package
	// documentation. Default WritesAuto.
	Writes WriteAcks
	// UnreplicatedLeases makes Lock hand out a lease as soon as its
	// primary has it, without waiting for the replicas: a lease that a
	// failover right after it can lose, letting a second instance refresh
	// the same token. By default Lock waits, whatever Writes says.
	UnreplicatedLeases bool
	// AckTimeout bounds each wait for the replicas' acknowledgement (the
	// timeout of Redis WAIT). Default DefaultAckTimeout; at most 4s.
	AckTimeout time.Duration
}

// WriteAcks says which writes wait for the replicas: see Options.Writes.
type WriteAcks int

const (
	// WritesAuto waits on a *redis.ClusterClient and on a failover
	// (Sentinel) client, whose deployments fail over, and not on a plain
	// *redis.Client or a *redis.Ring.
	WritesAuto WriteAcks = iota
	// WritesAcked makes Set, Delete, Take, AddMember, RemoveMember and
	// Unlock wait for the replicas of the key's primary (none, on a
	// primary without replicas).
	WritesAcked
	// WritesUnacked makes them return once the primary has them, as a
	// plain Redis client does: one round trip each, and a write that a
	// failover right after it can lose.
	WritesUnacked
)

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
	// ackTimeout bounds a wait for the replicas; ackLeases and ackWrites
	// say whether leases and other writes wait.
	ackTimeout           time.Duration
	ackLeases, ackWrites bool
	// reload, on a cluster client, makes it reload the cluster's layout.
	reload func()

	// released wakes this process's waiting Lock calls when it releases
	// a lock.
	released lease.ReleaseSignal
}

var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Taker           = (*Store)(nil)
	_ storage.Locker          = (*Store)(nil)
	_ storage.RenewableLocker = (*Store)(nil)
	_ storage.Indexer         = (*Store)(nil)
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
	case opts.AckTimeout < 0 || opts.AckTimeout > maxAckTimeout:
		return nil, fmt.Errorf("redisstore: Options.AckTimeout must be between 0 (default %v) and %v, got %v",
			DefaultAckTimeout, maxAckTimeout, opts.AckTimeout)
	case opts.AckTimeout > 0 && opts.AckTimeout < time.Millisecond:
		// WAIT counts whole milliseconds, and WAIT 0 would wait forever.
		return nil, fmt.Errorf("redisstore: Options.AckTimeout must be at least 1ms, got %v", opts.AckTimeout)
	case opts.AckTimeout == 0:
		opts.AckTimeout = DefaultAckTimeout
	}
	s := &Store{
		rdb:        rdb,
		kv:         opts.Prefix + "kv:",
		locks:      opts.Prefix + "lock:",
		sets:       opts.Prefix + "set:",
		log:        opts.Logger,
		detach:     !honoursDeadlines(rdb),
		ackTimeout: ms(opts.AckTimeout),
		ackLeases:  !opts.UnreplicatedLeases,
	}
	switch opts.Writes {
	case WritesAuto:
		s.ackWrites = failsOver(rdb)
	case WritesAcked:
		s.ackWrites = true
	case WritesUnacked:
	default:
		return nil, fmt.Errorf("redisstore: unknown Options.Writes %d", opts.Writes)
	}
	if c, ok := rdb.(interface{ ReloadState(context.Context) }); ok {
		s.reload = func() { c.ReloadState(context.Background()) }
	}
	if s.detach {
		s.log.Warn("redisstore: the Redis client ignores context deadlines (ContextTimeoutEnabled is off); " +
			"each call runs in a goroutine of its own so that it still ends with its context")
	}
	return s, nil
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
		if s.ackWrites {
			_, err := s.acked(ctx, s.kv+key, setScript, value, ms(ttl).Milliseconds())
			return err
		}
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
	return storage.Wrap("delete", callErr(s, ctx, func(ctx context.Context) error {
		if s.ackWrites {
			_, err := s.acked(ctx, s.kv+key, deleteScript)
			return err
		}
		return s.rdb.Del(ctx, s.kv+key).Err()
	}))
}

// Take implements storage.Taker with GETDEL.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Wrap("take", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	v, err := call(s, ctx, func(ctx context.Context) ([]byte, error) {
		if s.ackWrites {
			return s.takeAcked(ctx, s.kv+key)
		}
		return s.rdb.GetDel(ctx, s.kv+key).Bytes()
	})
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
// milliseconds unless another token holds it, and returns {won, replicas}
// (replicas: see luaReplicas; 0 unless ARGV[3] is "1"). It sets the lease
// again when it holds this token already: an attempt that go-redis retried
// after its first try won still wins, and the lease is a write of this
// connection, which is what WAIT waits for.
var leaseScript = redis.NewScript(luaReplicas + `
local v = redis.call("GET", KEYS[1])
if v and v ~= ARGV[1] then
	return {0, 0}
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return {1, replicas(ARGV[3])}`)

// unlockScript deletes the lease only if it still holds the caller's token
// (a GET then DEL from the client could delete a lease that lapsed and was
// taken by someone else in between), and returns {deleted, replicas}.
var unlockScript = redis.NewScript(luaReplicas + `
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return {redis.call("DEL", KEYS[1]), replicas(ARGV[2])}
end
return {0, 0}`)

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
	_, unlock, err := s.LockRenewable(ctx, name, ttl)
	return unlock, err
}

// LockRenewable implements storage.RenewableLocker: Lock, plus the lease's
// token for Renew.
func (s *Store) LockRenewable(ctx context.Context, name string, ttl time.Duration) (string, storage.Unlock, error) {
	if ttl <= 0 {
		return "", nil, storage.Wrap("lock", fmt.Errorf("redisstore: lock ttl must be positive, got %v", ttl))
	}
	if err := storage.ValidateKey(name); err != nil {
		return "", nil, storage.Wrap("lock", err)
	}
	token, err := newToken()
	if err != nil {
		return "", nil, storage.Wrap("lock", err)
	}
	unlock, err := s.lock(ctx, s.locks+name, token, ttl)
	if err != nil {
		return "", nil, err
	}
	return token, unlock, nil
}

// renewScript extends the lease KEYS[1] to ARGV[2] milliseconds if token
// ARGV[1] holds it (an expired key is gone, so a lapsed lease is never
// brought back), and returns {renewed, replicas} (ARGV[3]: the replicas
// flag of luaReplicas).
var renewScript = redis.NewScript(luaReplicas + `
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
	return {1, replicas(ARGV[3])}
end
return {0, 0}`)

// Renew implements storage.RenewableLocker with a script that extends the
// lease key only while it holds token. Unless leases are unreplicated (see
// Options.UnreplicatedLeases), the renewal waits for the replicas of the
// lease's primary, as Lock does: one they did not acknowledge is an
// ErrNotReplicated failure (the holder counts its lease from its last
// acknowledged renewal, which a failover keeps). Running it twice renews
// twice, so go-redis's retries are harmless.
func (s *Store) Renew(ctx context.Context, name, token string, ttl time.Duration) error {
	if ttl <= 0 {
		return storage.Wrap("renew", fmt.Errorf("redisstore: lock ttl must be positive, got %v", ttl))
	}
	if err := storage.ValidateKey(name); err != nil {
		return storage.Wrap("renew", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Wrap("renew", err)
	}
	key, px := s.locks+name, ms(ttl).Milliseconds()
	renewed, err := call(s, ctx, func(ctx context.Context) (bool, error) {
		if s.ackLeases {
			res, err := s.acked(ctx, key, renewScript, token, px)
			return len(res) == 1 && res[0] == int64(1), err
		}
		res, err := renewScript.Run(ctx, s.rdb, []string{key}, token, px, "0").Int64Slice()
		return len(res) == 2 && res[0] == 1, err
	})
	switch {
	case err != nil:
		return storage.Wrap("renew", err)
	case !renewed:
		return storage.ErrLeaseLost
	}
	return nil
}

// lock polls for the lease key until token holds it or ctx ends.
func (s *Store) lock(ctx context.Context, key, token string, ttl time.Duration) (storage.Unlock, error) {
	ttl = ms(ttl)
	delay := lockPollMin
	for {
		if err := ctx.Err(); err != nil {
			return nil, storage.Wrap("lock", err)
		}
		wake := s.released.Wait() // before the attempt, so a release in between is not missed
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
// Unless leases are unreplicated, a lease that the replicas of its primary
// did not all acknowledge is an ErrNotReplicated failure, which Lock gives
// back.
func (s *Store) attempt(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if !s.ackLeases {
		res, err := leaseScript.Run(ctx, s.rdb, []string{key}, token, ttl.Milliseconds(), "0").Int64Slice()
		if err != nil {
			return false, err
		}
		return len(res) == 2 && res[0] == 1, nil
	}
	res, err := s.acked(ctx, key, leaseScript, token, ttl.Milliseconds())
	return len(res) == 1 && res[0] == int64(1), err
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
		deleted, err := call(s, ctx, func(ctx context.Context) (bool, error) {
			if s.ackWrites {
				res, err := s.acked(ctx, key, unlockScript, token)
				return len(res) == 1 && res[0] == int64(1), err
			}
			res, err := unlockScript.Run(ctx, s.rdb, []string{key}, token, "0").Int64Slice()
			return len(res) == 2 && res[0] == 1, err
		})
		if err != nil {
			return storage.Wrap("lock", err)
		}
		if deleted {
			s.released.Released()
		}
		return nil
	}
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
