package testdb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// Store benchmarks on every backend, with a 256-byte value (a session
// record is about that size):
//
//	GINOAUTH_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench . -benchmem ./internal/testdb/

const benchKeys = 1000

var benchValue = make([]byte, 256)

func benchStores(b *testing.B, fn func(b *testing.B, s storage.Store)) {
	for _, be := range testdb.All() {
		b.Run(be.Name, func(b *testing.B) { fn(b, be.New(b)) })
	}
}

func fill(b *testing.B, s storage.Store, n int, prefix string) {
	ctx := context.Background()
	for i := range n {
		if err := s.Set(ctx, fmt.Sprint(prefix, i), benchValue, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	benchStores(b, func(b *testing.B, s storage.Store) {
		fill(b, s, benchKeys, "k")
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Get(ctx, fmt.Sprint("k", i%benchKeys)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGetParallel(b *testing.B) {
	benchStores(b, func(b *testing.B, s storage.Store) {
		fill(b, s, benchKeys, "k")
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if _, err := s.Get(ctx, fmt.Sprint("k", i%benchKeys)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkSet(b *testing.B) {
	benchStores(b, func(b *testing.B, s storage.Store) {
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.Set(ctx, fmt.Sprint("k", i%benchKeys), benchValue, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTake(b *testing.B) {
	benchStores(b, func(b *testing.B, s storage.Store) {
		tk := s.(storage.Taker)
		fill(b, s, b.N, "t")
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := tk.Take(ctx, fmt.Sprint("t", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLockUnlock(b *testing.B) {
	benchStores(b, func(b *testing.B, s storage.Store) {
		l := s.(storage.Locker)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			unlock, err := l.Lock(ctx, "refresh:did:plc:abc", time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if err := unlock(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
