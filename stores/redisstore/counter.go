package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Counter = (*Store)(nil)

// incrScript adds to a counter and gives it its expiry only when it has
// none, that is when this INCRBY created it: later increments never extend
// the window. One script is atomic, so no client can see (or leave, by
// dying between two commands) a counter without an expiry. It names one
// key, so it runs on Redis Cluster as it does on one server.
var incrScript = redis.NewScript(`
local n = redis.call("INCRBY", KEYS[1], ARGV[1])
if redis.call("PTTL", KEYS[1]) < 0 then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return n`)

// Incr implements storage.Counter with INCRBY and PEXPIRE in one Lua
// script. Counters live among the entries, under the same prefix.
func (s *Store) Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, storage.Wrap("incr", err)
	}
	if err := storage.ValidateKey(key); err != nil {
		return 0, storage.Wrap("incr", err)
	}
	if by < 1 || ttl <= 0 {
		return 0, storage.Wrap("incr", fmt.Errorf("redisstore: by must be at least 1 and ttl positive (got %d, %v)", by, ttl))
	}
	n, err := incrScript.Run(ctx, s.rdb, []string{s.kv + key}, by, ms(ttl).Milliseconds()).Int64()
	if err != nil {
		return 0, storage.Wrap("incr", err)
	}
	return n, nil
}
