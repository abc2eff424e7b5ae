package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Swapper = (*Store)(nil)

// swapScript replaces KEYS[1] with ARGV[2] only if it holds ARGV[1]; ARGV[3]
// is the TTL in milliseconds (0: none). A script runs atomically on the
// server, and touches one key, as Redis Cluster needs.
var swapScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ttl)
else
	redis.call("SET", KEYS[1], ARGV[2])
end
return 1`)

// Swap implements storage.Swapper with a Lua script: the GET, the
// comparison and the SET are one step on the server. A missing or expired
// key makes GET return false in Lua, which equals no string.
func (s *Store) Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, storage.Wrap("swap", err)
	}
	if storage.ValidateKey(key) != nil {
		return false, nil // cannot exist
	}
	if ttl < 0 {
		return false, storage.Wrap("swap", fmt.Errorf("redisstore: negative ttl %v", ttl))
	}
	if old == nil {
		old = []byte{}
	}
	if new == nil {
		new = []byte{}
	}
	n, err := swapScript.Run(ctx, s.rdb, []string{s.kv + key}, old, new, ms(ttl).Milliseconds()).Int()
	if err != nil {
		return false, storage.Wrap("swap", err)
	}
	return n == 1, nil
}
