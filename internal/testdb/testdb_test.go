package testdb_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// Every store testdb hands out is closed at cleanup: nothing leaks.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// closer is what the SQL stores have; a test may close a store early to
// simulate an outage, and cleanup must still work.
type closer interface{ Close() error }

func TestClosedEarly(t *testing.T) {
	for _, b := range testdb.All() {
		t.Run(b.Name, func(t *testing.T) {
			if c, ok := b.New(t).(closer); ok {
				_ = c.Close()
			}
		})
	}
}

func TestBackends(t *testing.T) {
	for _, b := range testdb.All() {
		t.Run(b.Name, func(t *testing.T) {
			s := b.New(t)
			ctx := context.Background()
			if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(ctx, "k"); err != nil || string(v) != "v" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			// Each call gives an empty store of its own.
			if _, err := b.New(t).Get(ctx, "k"); err == nil {
				t.Error("a new store sees another store's key")
			}
		})
	}
}

// TestRedis: each store is empty and of its own, a pair shares its data,
// and the keys are gone once the test ends.
func TestRedis(t *testing.T) {
	testdb.RedisAddr(t)
	ctx := context.Background()
	var prefix string
	t.Run("stores", func(t *testing.T) {
		prefix = testdb.RedisPrefix(t)
		rdb := testdb.RedisClient(t)
		s := testdb.Redis(t)
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := testdb.Redis(t).Get(ctx, "k"); err == nil {
			t.Error("a new store sees another store's key")
		}
		a, b := testdb.RedisPair(t)
		if err := a.Set(ctx, "k", []byte("shared"), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, "k"); err != nil || string(v) != "shared" {
			t.Fatalf("the pair's second store: %q, %v", v, err)
		}
		if err := rdb.Set(ctx, prefix+"x", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	rdb := testdb.RedisClient(t)
	if n, err := rdb.Exists(ctx, prefix+"x").Result(); err != nil || n != 0 {
		t.Errorf("a key under RedisPrefix survived the test: %d, %v", n, err)
	}
}
