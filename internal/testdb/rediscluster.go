package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// RedisClusterEnv names the environment variable listing the test Redis
// Cluster's nodes, comma separated, e.g. the output of
// `bash scripts/ci/redis-cluster.sh addrs`, which also starts one.
const RedisClusterEnv = "GINOAUTH_TEST_REDIS_CLUSTER"

// RedisClusterAddrs returns the test cluster's node addresses, or skips t
// when RedisClusterEnv is unset.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := os.Getenv(RedisClusterEnv)
	if addrs == "" {
		t.Skip("Redis Cluster tests skipped: set " + RedisClusterEnv +
			" (e.g. " + RedisClusterEnv + "=$(bash scripts/ci/redis-cluster.sh start >/dev/null && bash scripts/ci/redis-cluster.sh addrs))")
	}
	return strings.Split(addrs, ",")
}

// RedisClusterClient returns a new cluster client (a connection pool of
// its own, as another app instance has) on the test cluster, closed at
// cleanup, with ContextTimeoutEnabled unless modify turns it off. It skips
// t when RedisClusterEnv is unset.
func RedisClusterClient(t testing.TB, modify ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{Addrs: RedisClusterAddrs(t), ContextTimeoutEnabled: true}
	for _, m := range modify {
		m(o)
	}
	c := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// RedisClusterPrefix returns a key prefix of the test's own on the test
// cluster, and deletes every key under it, on every primary, when the test
// (with its subtests) ends. It skips t when RedisClusterEnv is unset.
func RedisClusterPrefix(t testing.TB) string {
	t.Helper()
	addrs := RedisClusterAddrs(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "ginoauth-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		// A client of its own: the test may have closed its clients.
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			// One key per UNLINK: a cluster node refuses keys of several slots in one.
			iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := node.Unlink(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
		if err != nil {
			t.Errorf("testdb: delete the Redis Cluster keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// RedisClusterPair returns two stores on one fresh prefix of the test
// cluster through two cluster clients, as two app instances have. It skips
// t when RedisClusterEnv is unset.
func RedisClusterPair(t testing.TB) (storage.Store, storage.Store) {
	t.Helper()
	prefix := RedisClusterPrefix(t)
	return RedisClusterOn(t, prefix), RedisClusterOn(t, prefix)
}

// RedisClusterOn returns a store on prefix through a new cluster client.
func RedisClusterOn(t testing.TB, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(RedisClusterClient(t), redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return s
}
