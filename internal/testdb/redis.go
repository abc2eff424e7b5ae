package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// RedisEnv names the environment variable holding the test Redis server's
// address, e.g. 127.0.0.1:6379.
const RedisEnv = "GINOAUTH_TEST_REDIS_ADDR"

// RedisAddr returns the test Redis server's address, or skips t when
// RedisEnv is unset.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(RedisEnv)
	if addr == "" {
		t.Skip("Redis tests skipped: set " + RedisEnv + " (e.g. " + RedisEnv + "=127.0.0.1:6379)")
	}
	return addr
}

// RedisClient returns a new client (a connection pool of its own, as
// another app instance has) on the test server, closed at cleanup, with
// ContextTimeoutEnabled as the README recommends. It skips t when RedisEnv
// is unset.
func RedisClient(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// RedisPrefix returns a key prefix of the test's own, and deletes every key
// under it when the test (with its subtests) ends: test packages run in
// parallel against one server. It skips t when RedisEnv is unset.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	addr := RedisAddr(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "ginoauth-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		// A client of its own: the test may have closed its clients to
		// simulate an outage.
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deleteUnder(ctx, rdb, prefix); err != nil {
			t.Errorf("testdb: delete the Redis keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

func deleteUnder(ctx context.Context, rdb *redis.Client, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(keys) > 0 {
		return rdb.Unlink(ctx, keys...).Err()
	}
	return nil
}

// Redis returns a store on a key prefix of its own on the test server; its
// keys are deleted and its client closed at cleanup. It skips t when
// RedisEnv is unset.
func Redis(t testing.TB) storage.Store {
	t.Helper()
	return redisOn(t, RedisPrefix(t))
}

// RedisPair returns two stores on one fresh prefix through two clients, as
// two app instances sharing a Redis server have. It skips t when RedisEnv
// is unset.
func RedisPair(t testing.TB) (storage.Store, storage.Store) {
	t.Helper()
	prefix := RedisPrefix(t)
	return redisOn(t, prefix), redisOn(t, prefix)
}

func redisOn(t testing.TB, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(RedisClient(t), redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return s
}
