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
