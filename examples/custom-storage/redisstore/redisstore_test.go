package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/redisstore"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
)

// redisAddr returns the test Redis server's address, or skips.
func redisAddr(t *testing.T) string {
	addr := os.Getenv("GINOAUTH_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("GINOAUTH_TEST_REDIS_ADDR is not set: skipping the Redis storage tests (e.g. GINOAUTH_TEST_REDIS_ADDR=127.0.0.1:6379)")
	}
	return addr
}

// testPrefix returns a key prefix of this test's own and deletes every key
// under it when the test (and all its subtests) are done.
func testPrefix(t *testing.T, addr string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "ginoauth-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup scan: %v", err)
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return prefix
}

// The library's storage contract suite, against a real Redis server.
func TestStorageContract(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t, addr)
	var clients sync.Map // *redisstore.Store -> *redis.Client
	open := func(t *testing.T) storage.Store {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = rdb.Close() })
		s := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
		clients.Store(s, rdb)
		return s
	}
	storagetest.Run(t, storagetest.Harness{
		New: open,
		// A second client on the same server, as a second app instance has.
		Reopen: func(t *testing.T, _ storage.Store) storage.Store { return open(t) },
		// A closed client fails every call, like a lost connection.
		Break: func(t *testing.T, s storage.Store) {
			rdb, _ := clients.Load(s)
			_ = rdb.(*redis.Client).Close()
		},
	})
}

// Keys are namespaced: entries, locks and other apps' keys never meet.
func TestPrefixes(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t, addr)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	a := redisstore.New(rdb, redisstore.Options{Prefix: prefix + "a:"})
	b := redisstore.New(rdb, redisstore.Options{Prefix: prefix + "b:"})
	if err := a.Set(ctx, "k", []byte("from a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); err != storage.ErrNotFound {
		t.Fatalf("another prefix sees the key: %v", err)
	}
	if got, err := rdb.Get(ctx, prefix+"a:kv:k").Result(); err != nil || got != "from a" {
		t.Fatalf("raw key: %q %v", got, err)
	}
	if ttl := rdb.PTTL(ctx, prefix+"a:kv:k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL in Redis = %v, want about a minute", ttl)
	}
	// A lock named like an entry is a different key.
	unlock, err := a.Lock(ctx, "k", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k"); err != nil || string(v) != "from a" {
		t.Fatalf("taking a lock touched the entry: %q %v", v, err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, prefix+"a:lock:k").Val(); n != 0 {
		t.Fatal("Unlock left the lock key behind")
	}
}
