package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// What waiting for the replicas costs, on the test server (no replicas:
// nothing to wait for, but a lease takes three round trips instead of
// one) and on the test cluster (one replica per primary), against the same
// store with the acknowledgements off:
//
//	GINOAUTH_TEST_REDIS_ADDR=127.0.0.1:6379 \
//	GINOAUTH_TEST_REDIS_CLUSTER=$(bash scripts/ci/redis-cluster.sh addrs) \
//	  go test -run '^$' -bench . -benchmem ./stores/redisstore/
func BenchmarkAcks(b *testing.B) {
	clients := []struct {
		name string
		new  func(b *testing.B) (redis.UniversalClient, string)
	}{
		{"server", func(b *testing.B) (redis.UniversalClient, string) {
			return testdb.RedisClient(b), testdb.RedisPrefix(b)
		}},
		{"cluster", func(b *testing.B) (redis.UniversalClient, string) {
			return testdb.RedisClusterClient(b), testdb.RedisClusterPrefix(b)
		}},
	}
	value := make([]byte, 256) // about a session record
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			rdb, prefix := c.new(b)
			for _, acks := range []bool{true, false} {
				opts := redisstore.Options{Prefix: prefix, Writes: redisstore.WritesAcked}
				name := "acked"
				if !acks {
					opts.Writes, opts.UnreplicatedLeases, name = redisstore.WritesUnacked, true, "unacked"
				}
				s, err := redisstore.New(rdb, opts)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.Run(name+"/set", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if err := s.Set(ctx, "k"+strconv.Itoa(i%100), value, time.Minute); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run(name+"/get", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if _, err := s.Get(ctx, "k"+strconv.Itoa(i%100)); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run(name+"/lock+unlock", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						unlock, err := s.Lock(ctx, "l"+strconv.Itoa(i%100), time.Minute)
						if err != nil {
							b.Fatal(err)
						}
						if err := unlock(ctx); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// What a client without ContextTimeoutEnabled costs a Get (each call in a
// goroutine of its own), against one with it, on the test server:
//
//	GINOAUTH_TEST_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench Detached -benchmem ./stores/redisstore/
func BenchmarkDetached(b *testing.B) {
	prefix := testdb.RedisPrefix(b)
	for _, honour := range []bool{true, false} {
		name := map[bool]string{true: "ContextTimeoutEnabled", false: "without"}[honour]
		b.Run(name, func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: testdb.RedisAddr(b), ContextTimeoutEnabled: honour})
			defer rdb.Close()
			s := newStore(b, rdb, prefix)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // a ctx that ends, as the library's do
			defer cancel()
			if err := s.Set(ctx, "k", make([]byte, 256), time.Hour); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
