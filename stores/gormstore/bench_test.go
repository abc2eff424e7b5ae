package gormstore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/internal/testdb/pgreplica"
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

// BenchmarkReplicaRead compares the session check's read on the primary
// (Get) with the same read through GetStale on the streaming replica of
// scripts/ci/pg-replica.sh, 8 readers at a time, 1000 keys of 256 bytes.
// It reports reads/s and the share GetStale answered from the replica.
// Both servers and the benchmark share this machine's cores, so the
// figure to read is the ratio: what a read costs on a replica next to the
// primary, sampling of the lag included.
//
//	eval "$(bash scripts/ci/pg-replica.sh start)"
//	go test -run '^$' -bench ReplicaRead -benchtime 5s -count 3 ./stores/gormstore/
//	bash scripts/ci/pg-replica.sh stop
func BenchmarkReplicaRead(b *testing.B) {
	pair := pgreplica.Use(b)
	f := newReplicaStore(b, pair, "", Options{Replica: &Replica{MaxStaleness: time.Second}})
	s, ctx := f.store, context.Background()
	const keys = 1000
	value := make([]byte, 256)
	for i := range keys {
		if err := s.Set(ctx, fmt.Sprint("sess:", i), value, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	pair.WaitCaughtUp(b)
	reads := map[string]func(context.Context, string) ([]byte, error){
		"primary-Get":      s.Get,
		"replica-GetStale": s.GetStale,
	}
	for _, name := range []string{"primary-Get", "replica-GetStale"} {
		read := reads[name]
		b.Run(name, func(b *testing.B) {
			// Reads in use long enough for the lag sampler to vouch for
			// the replica.
			for range 200 {
				_, _ = s.GetStale(ctx, "sess:0")
				time.Sleep(5 * time.Millisecond)
			}
			before := s.ReplicaStats()
			var n atomic.Int64
			b.SetParallelism(4) // 8 readers on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := int(n.Add(1)) * 7919
				for pb.Next() {
					i++
					if _, err := read(ctx, fmt.Sprint("sess:", i%keys)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
			if name == "replica-GetStale" {
				after := s.ReplicaStats()
				served := after.ReplicaReads - before.ReplicaReads
				all := served + (after.LagFallbacks - before.LagFallbacks) + (after.MissFallbacks - before.MissFallbacks) + (after.ErrorFallbacks - before.ErrorFallbacks)
				if all > 0 {
					b.ReportMetric(100*float64(served)/float64(all), "%replica")
				}
			}
		})
	}
}
