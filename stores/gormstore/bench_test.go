package gormstore

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkCleanup1M times DeleteExpired on a backlog of 1M expired rows
// (plus 1000 live ones) with the default batch size. It is slow, so it runs
// only with GINOAUTH_BENCH_CLEANUP=1:
//
//	GINOAUTH_BENCH_CLEANUP=1 GINOAUTH_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench Cleanup1M -benchtime 1x ./stores/gormstore/
func BenchmarkCleanup1M(b *testing.B) {
	if os.Getenv("GINOAUTH_BENCH_CLEANUP") != "1" {
		b.Skip("set GINOAUTH_BENCH_CLEANUP=1 to run (slow)")
	}
	const backlog, live = 1_000_000, 1000
	for _, kind := range backends {
		b.Run(kind.name, func(b *testing.B) {
			f := newFixture(b, kind, Options{})
			s, ctx := f.store, context.Background()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				insertExpired(b, s, "old:", backlog, time.Now().Add(-time.Minute))
				if i == 0 {
					insertLive(b, s, live)
				}
				if s.d.name == DialectPostgres {
					s.DB().Exec(`ANALYZE ` + quote(f.opts.Table)) // as autovacuum would after a bulk load
				}
				b.StartTimer()
				start := time.Now()
				n, err := s.DeleteExpired(ctx)
				total += time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if n != backlog {
					b.Fatalf("removed %d rows, want %d", n, backlog)
				}
			}
			b.ReportMetric(float64(backlog)*float64(b.N)/total.Seconds(), "rows/s")
		})
	}
}

func insertLive(b *testing.B, s *Store, n int) {
	ctx := context.Background()
	for i := range n {
		if err := s.Set(ctx, fmt.Sprint("live:", i), []byte("v"), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMembers1M times Members of a set of 10 and of 10,000 members in
// a set table of 1,000,000 rows spread over about 100,000 sets: the lookup
// must cost what the set holds, not what the table holds. Loading the table
// takes a while, so it runs only with GINOAUTH_BENCH_INDEX=1:
//
//	GINOAUTH_BENCH_INDEX=1 GINOAUTH_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench Members1M ./stores/gormstore/
func BenchmarkMembers1M(b *testing.B) {
	if os.Getenv("GINOAUTH_BENCH_INDEX") != "1" {
		b.Skip("set GINOAUTH_BENCH_INDEX=1 to run (slow)")
	}
	const rows = 1_000_000
	sizes := []int{10, 10_000}
	for _, kind := range backends {
		b.Run(kind.name, func(b *testing.B) {
			f := newFixture(b, kind, Options{})
			s, ctx := f.store, context.Background()
			filler := rows
			for _, n := range sizes {
				filler -= n
			}
			// Sets "fill:0".."fill:99999" of 10 members each (the first
			// one 9), then the measured sets "size:10" and "size:10000".
			insertMembers(b, s, "fill:", 10, "m", filler, nil)
			for _, n := range sizes {
				insertMembers(b, s, fmt.Sprint("size:", n, ":"), rows, "s", n, nil) // one set: i/rows is 0
			}
			if got := count(b, s, s.opts.SetTable); got != rows {
				b.Fatalf("set table holds %d rows, want %d", got, rows)
			}
			if err := s.DB().Exec(`ANALYZE ` + quote(s.opts.SetTable)).Error; err != nil { // as autovacuum would after a bulk load
				b.Fatal(err)
			}
			for _, n := range sizes {
				set := fmt.Sprint("size:", n, ":0")
				b.Run(fmt.Sprint(n), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						got, err := s.Members(ctx, set)
						if err != nil {
							b.Fatal(err)
						}
						if len(got) != n {
							b.Fatalf("Members returned %d members, want %d", len(got), n)
						}
					}
				})
			}
		})
	}
}
