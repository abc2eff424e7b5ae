// Package pgreplica gives tests a Postgres primary with a streaming replica
// whose replay they can pause, to make it lag for real. The pair comes from
// scripts/ci/pg-replica.sh (start prints the two variables); tests skip
// when the variables are unset.
//
// It imports no store, so the stores' own tests can use it.
package pgreplica

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Environment variables holding the DSNs of the primary and of its
// replica, as scripts/ci/pg-replica.sh start prints them.
const (
	PrimaryEnv = "GINOAUTH_TEST_REPLICA_PRIMARY_DSN"
	ReplicaEnv = "GINOAUTH_TEST_REPLICA_DSN"
)

// lockKey is the advisory lock that keeps test processes from pausing and
// resuming the one replica under each other.
const lockKey = 0x67696e6f61757468 // "ginoauth"

// Pair is the primary and its replica.
type Pair struct {
	PrimaryDSN, ReplicaDSN string
	primary, replica       *sql.DB
}

// The process's users of the pair: the first takes the cross-process lock,
// the last releases it; pauses nest across them.
var shared struct {
	sync.Mutex
	users  int
	pair   *Pair
	lockDB *sql.Conn
	pauses int
}

// Use returns the pair, or skips t when the variables are unset. For t's
// duration this process holds an advisory lock on the primary, so tests in
// other processes that use the pair wait for it (one process pausing the
// replica while another expects it to keep up would make both flaky).
func Use(t testing.TB) *Pair {
	t.Helper()
	pdsn, rdsn := os.Getenv(PrimaryEnv), os.Getenv(ReplicaEnv)
	if pdsn == "" || rdsn == "" {
		t.Skip("replica tests skipped: set " + PrimaryEnv + " and " + ReplicaEnv + " (bash scripts/ci/pg-replica.sh start prints them)")
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.users == 0 {
		p := &Pair{PrimaryDSN: pdsn, ReplicaDSN: rdsn}
		var err error
		if p.primary, err = sql.Open("pgx", pdsn); err != nil {
			t.Fatalf("pgreplica: %v", err)
		}
		if p.replica, err = sql.Open("pgx", rdsn); err != nil {
			_ = p.primary.Close()
			t.Fatalf("pgreplica: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conn, err := p.primary.Conn(ctx)
		if err == nil {
			_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(lockKey))
		}
		if err != nil {
			_ = p.primary.Close()
			_ = p.replica.Close()
			t.Fatalf("pgreplica: take the lock on the primary: %v", err)
		}
		// A test process killed while paused leaves the replica paused.
		if _, err := p.replica.ExecContext(ctx, `SELECT pg_wal_replay_resume()`); err != nil {
			t.Fatalf("pgreplica: resume replay: %v", err)
		}
		shared.pair, shared.lockDB = p, conn
	}
	shared.users++
	t.Cleanup(release)
	return shared.pair
}

func release() {
	shared.Lock()
	defer shared.Unlock()
	if shared.users--; shared.users > 0 {
		return
	}
	p := shared.pair
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if shared.pauses > 0 { // a test failed between pause and resume
		shared.pauses = 0
		_, _ = p.replica.ExecContext(ctx, `SELECT pg_wal_replay_resume()`)
	}
	_, _ = shared.lockDB.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, int64(lockKey))
	_ = shared.lockDB.Close()
	_ = p.primary.Close()
	_ = p.replica.Close()
	shared.pair, shared.lockDB = nil, nil
}

// Pause stops the replica from replaying the primary's WAL (it still
// receives it) until resume is called, which also happens when t ends.
// Pauses nest: replay resumes when every pause has been resumed.
func (p *Pair) Pause(t testing.TB) (resume func()) {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.pauses == 0 {
		if _, err := p.replica.ExecContext(context.Background(), `SELECT pg_wal_replay_pause()`); err != nil {
			t.Fatalf("pgreplica: pause replay: %v", err)
		}
	}
	shared.pauses++
	var once sync.Once
	resume = func() {
		once.Do(func() {
			shared.Lock()
			defer shared.Unlock()
			if shared.pauses == 0 {
				return // released already
			}
			if shared.pauses--; shared.pauses == 0 {
				if _, err := p.replica.ExecContext(context.Background(), `SELECT pg_wal_replay_resume()`); err != nil {
					t.Errorf("pgreplica: resume replay: %v", err)
				}
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// WaitCaughtUp waits (at most 30 s) until the replica has replayed what
// the primary had written when it was called.
func (p *Pair) WaitCaughtUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var target string
	if err := p.primary.QueryRowContext(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatalf("pgreplica: %v", err)
	}
	for {
		var done bool
		err := p.replica.QueryRowContext(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, target).Scan(&done)
		if err != nil {
			t.Fatalf("pgreplica: wait for the replica: %v", err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pgreplica: the replica did not reach %s in 30 s (paused?)", target)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Replica is a connection pool of the pair's on the replica, for checks of
// what it holds; do not close it.
func (p *Pair) Replica() *sql.DB { return p.replica }
