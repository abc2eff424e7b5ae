package ginoauth

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file is the login rate limiter: how often one client address may
// start a login (each start sends a pushed authorization request to an
// authorization server) and reach the callback (each costs a storage read).
// Session checks never come here.

// RateLimits bounds, per client address, how often logins start and how
// often the callback is reached. They are on by default, at numbers a
// person never reaches; set them in Config.RateLimits. An address over a
// limit gets 429 with Retry-After (through Config.ErrorHandler, code
// CodeRateLimited) until its window ends.
//
// The client address is Gin's c.ClientIP(), so it follows the engine's
// SetTrustedProxies and TrustedPlatform. Gin's default trusts every peer
// as a proxy, which would let anyone choose their address with an
// X-Forwarded-For header: with that default the limits ignore
// X-Forwarded-For and X-Real-IP and count the connection's own address.
// Behind a proxy or load balancer, call engine.SetTrustedProxies with its
// addresses (or set engine.TrustedPlatform), or every client counts as the
// proxy. IPv6 addresses count by their /64 prefix (what one host is
// usually given).
//
// With a Storage that has the storage.Counter capability (memstore,
// redisstore, sqlitestore, postgresstore), instances sharing the store
// share the counts; with one that does not, each instance counts on its
// own, so N instances let N times the limit through. Windows are fixed
// (aligned to the clock), so a client can spend one window's limit at its
// end and the next one's at once: at most twice the limit in a short span.
//
// No limit is per handle or account: a limit that anyone could spend by
// naming someone's handle would lock that person out of their own login.
// A flood naming a handle counts against the flooder's address only.
type RateLimits struct {
	// Disabled turns the limits off: for load tests from one address, or
	// when a proxy in front of the app limits these routes already.
	Disabled bool
	// LoginStarts is how many logins one address may start per Window:
	// the login and step-up routes, the native-app start, and StartOAuth
	// and StepUp called from your own handlers, together. Each is one
	// request to an authorization server. Default 30.
	LoginStarts int
	// Callbacks is how many callback requests one address may make per
	// Window. Default 60.
	Callbacks int
	// Window is the period the limits count over: 1 second to 1 hour,
	// default 1 minute.
	Window time.Duration
}

// The defaults RateLimits documents: a person starts a login a few times a
// minute at most (typos, a second account), and a household or office
// behind one address several times that.
const (
	defaultLoginStarts     = 30
	defaultCallbacks       = 60
	defaultRateLimitWindow = time.Minute
)

// RateLimitMetrics is an optional capability of Config.Metrics: a Metrics
// that also has RateLimited is told of every request the rate limits
// refused. ginoauth/prommetrics implements it.
type RateLimitMetrics interface {
	// RateLimited counts a request refused with 429, by limit:
	// "login_start" or "callback".
	RateLimited(limit string)
}

// limitKind names a limit in metrics, storage keys and logs.
type limitKind string

const (
	limitLoginStart limitKind = "login_start"
	limitCallback   limitKind = "callback"
)

// rateLimitedError is a request refused by a limit (429).
type rateLimitedError struct {
	kind       limitKind
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("ginoauth: rate limited: %s: retry after %v", e.kind, e.retryAfter)
}

// Shards of the in-process counts: a flood from one address contends on
// one shard's lock, not on every login's.
const (
	limiterShards = 32
	// maxTrackedPerShard bounds memory (about 10 MB in all): past it, new
	// addresses in the window are let through uncounted rather than
	// locked out. Reaching it takes over 100,000 addresses in one window,
	// a distributed flood that belongs to the proxy or firewall in front.
	maxTrackedPerShard = 4096
	// counterGrace keeps a window's shared counter a little past the
	// window, for requests that began in it and reach the store late.
	counterGrace = time.Second
)

// rateLimiter enforces RateLimits. Without a storage.Counter it counts in
// process. With one, the store's counter is the count and the process only
// remembers which addresses are over their limit in the current window, so
// a flood costs one storage increment per instance per request up to the
// limit, and none after it.
type rateLimiter struct {
	limits  RateLimits
	counter storage.Counter // nil: counts in process only
	now     func() time.Time
	timeout time.Duration
	metrics Metrics
	refused func(kind string)
	log     *slog.Logger

	// addrKey keys the hash that stands for an address in storage keys:
	// stores never hold client addresses (see Config.RecordIP), and
	// instances sharing CookieSecret share the counters.
	addrKey []byte

	warnedProxy   atomic.Bool
	warnedFull    atomic.Bool
	lastStoreWarn atomic.Int64 // window in which a storage failure was last logged

	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu     sync.Mutex
	window int64
	counts map[string]int64 // by kind and address: this window's count
}

// newRateLimiter checks cfg.RateLimits, fills in its defaults and returns
// the limiter, or nil when the limits are disabled.
func newRateLimiter(cfg Config, metrics Metrics, log *slog.Logger) (*rateLimiter, error) {
	rl := cfg.RateLimits
	if rl.Disabled {
		return nil, nil
	}
	if rl.LoginStarts < 0 || rl.Callbacks < 0 || rl.Window < 0 || (rl.Window > 0 && (rl.Window < time.Second || rl.Window > time.Hour)) {
		return nil, &ConfigurationError{Field: "RateLimits", Reason: fmt.Sprintf(
			"LoginStarts and Callbacks must not be negative and Window must be between a second and an hour (got %d, %d, %v); set Disabled to turn the limits off",
			rl.LoginStarts, rl.Callbacks, rl.Window)}
	}
	if rl.LoginStarts == 0 {
		rl.LoginStarts = defaultLoginStarts
	}
	if rl.Callbacks == 0 {
		rl.Callbacks = defaultCallbacks
	}
	if rl.Window == 0 {
		rl.Window = defaultRateLimitWindow
	}
	addrKey, err := hkdf.Key(sha256.New, []byte(cfg.CookieSecret), nil, "ginoauth rate limit address v1", 32)
	if err != nil {
		return nil, err
	}
	l := &rateLimiter{limits: rl, now: cfg.Now, timeout: cfg.StorageTimeout, metrics: metrics, log: log, refused: func(string) {}, addrKey: addrKey}
	if rm, ok := metrics.(RateLimitMetrics); ok {
		l.refused = rm.RateLimited
	}
	if c, ok := cfg.Storage.(storage.Counter); ok {
		l.counter = c
	} else {
		log.Info("storage has no storage.Counter: login rate limits are counted by each instance on its own")
	}
	return l, nil
}

// allow counts one request of kind from c's client address and returns a
// *rateLimitedError when the address is over its limit. A nil limiter
// (limits disabled) allows everything.
func (l *rateLimiter) allow(c *gin.Context, kind limitKind) error {
	if l == nil {
		return nil
	}
	limit := int64(l.limits.LoginStarts)
	if kind == limitCallback {
		limit = int64(l.limits.Callbacks)
	}
	addr := l.clientAddress(c)
	now := l.now()
	window := now.UnixNano() / int64(l.limits.Window)
	end := time.Unix(0, (window+1)*int64(l.limits.Window))
	key := string(kind) + " " + addr
	sh := &l.shards[shardOf(key)]

	sh.mu.Lock()
	if sh.window != window || sh.counts == nil {
		sh.window, sh.counts = window, make(map[string]int64)
	}
	seen, tracked := sh.counts[key]
	if seen >= limit {
		// Over the limit already (counted here, or as the store said):
		// refused without a storage round trip.
		sh.mu.Unlock()
		return l.refuse(kind, now, end)
	}
	if l.counter == nil {
		if !tracked && len(sh.counts) >= maxTrackedPerShard {
			sh.mu.Unlock()
			l.full()
			return nil
		}
		sh.counts[key] = seen + 1
		sh.mu.Unlock()
		return nil
	}
	sh.mu.Unlock()

	n, err := l.incr(c.Request.Context(), kind, addr, window, end.Sub(now)+counterGrace)
	if err != nil {
		// The store could not count: count in process for now, so a
		// storage outage neither lifts the limit nor blocks logins.
		l.storeFailed(window, err)
		n = 0
		sh.mu.Lock()
		if sh.window == window && (tracked || len(sh.counts) < maxTrackedPerShard) {
			n = sh.counts[key] + 1
			sh.counts[key] = n
		}
		sh.mu.Unlock()
	} else if n > limit {
		sh.mu.Lock()
		if sh.window == window {
			sh.counts[key] = max(sh.counts[key], n) // refuse the rest of the window without the store
		}
		sh.mu.Unlock()
	}
	if n > limit {
		return l.refuse(kind, now, end)
	}
	return nil
}

// incr adds one to the shared counter of kind, addr and window.
func (l *rateLimiter) incr(ctx context.Context, kind limitKind, addr string, window int64, ttl time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	// The window's length is in the key, so instances configured with
	// different windows never add to each other's counters.
	mac := hmac.New(sha256.New, l.addrKey)
	mac.Write([]byte(addr))
	key := "rl:" + string(kind) + ":" + strconv.FormatInt(l.limits.Window.Milliseconds(), 10) + "ms:" +
		base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16]) + ":" + strconv.FormatInt(window, 10)
	return l.counter.Incr(ctx, key, 1, ttl)
}

func (l *rateLimiter) refuse(kind limitKind, now, end time.Time) error {
	l.refused(string(kind))
	return &rateLimitedError{kind: kind, retryAfter: end.Sub(now)}
}

func (l *rateLimiter) storeFailed(window int64, err error) {
	l.metrics.StorageFailed("incr")
	// Once per window: a flood during an outage must not flood the logs.
	if last := l.lastStoreWarn.Load(); last != window && l.lastStoreWarn.CompareAndSwap(last, window) {
		l.log.Warn("rate limit counter failed; counting in this instance until the storage answers", "err", err)
	}
}

func (l *rateLimiter) full() {
	if l.warnedFull.CompareAndSwap(false, true) {
		l.log.Warn("rate limiter tracks the most addresses it may in this window; further new addresses are not limited until the next window")
	}
}

func shardOf(key string) uint32 {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return h % limiterShards
}

// Gin's default names of the headers that carry a forwarded client
// address (Engine.RemoteIPHeaders).
var forwardingHeaders = []string{"X-Forwarded-For", "X-Real-IP"}

// clientAddress is the address the limits count c's request under: Gin's
// ClientIP, except that forwarding headers are ignored when the engine
// trusts every peer as a proxy (Gin's default, under which they are
// whatever the client wrote), and IPv6 counted by /64.
func (l *rateLimiter) clientAddress(c *gin.Context) string {
	ip := c.ClientIP()
	if peer := c.RemoteIP(); peer != "" && ip != peer && trustsEveryPeer(c) {
		ip = clientIPWithout(c, c.Request.RemoteAddr, forwardingHeaders)
		if l.warnedProxy.CompareAndSwap(false, true) {
			l.log.Warn("Gin trusts X-Forwarded-For from every client (its default), so the login rate limits count the connection's address instead; " +
				"call engine.SetTrustedProxies with your proxy's addresses (nil without a proxy)")
		}
	}
	return addressKey(ip)
}

// trustsEveryPeer reports whether c's engine takes a forwarded address
// from any peer at all: asked from the unspecified addresses, which no
// deliberate trusted-proxy list names, it still believes the header.
func trustsEveryPeer(c *gin.Context) bool {
	const probe = "192.0.2.1" // TEST-NET-1
	for _, peer := range []string{"0.0.0.0:1", "[::]:1"} {
		h := http.Header{}
		h.Set("X-Forwarded-For", probe)
		if clientIPOf(c, peer, h) == probe {
			return true
		}
	}
	return false
}

// clientIPWithout is what c's engine takes as the client address of c's
// request coming from peer without the headers drop (TrustedPlatform's
// header, if set, still counts).
func clientIPWithout(c *gin.Context, peer string, drop []string) string {
	h := c.Request.Header.Clone()
	for _, name := range drop {
		h.Del(name)
	}
	return clientIPOf(c, peer, h)
}

// clientIPOf asks c's engine what ClientIP would be for a request from
// peer with header h.
func clientIPOf(c *gin.Context, peer string, h http.Header) string {
	probe := c.Copy()
	probe.Request = &http.Request{RemoteAddr: peer, Header: h}
	return probe.ClientIP()
}

// addressKey is the form of ip the limits count by: IPv4 as is, IPv6 by
// its /64, anything unparsable (a platform header gone wrong) under one
// shared key, so that junk cannot make up fresh addresses.
func addressKey(ip string) string {
	parsed := net.ParseIP(ip)
	switch {
	case parsed == nil:
		return "invalid"
	case parsed.To4() != nil:
		return parsed.To4().String()
	default:
		return parsed.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded up,
// at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
