package gormstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// DefaultMaxStaleness is Replica.MaxStaleness when it is left 0.
const DefaultMaxStaleness = time.Second

// Replica sends the reads of storage.StaleReader (the library's session
// check, and nothing else) to an asynchronous streaming replica of the
// Postgres primary the store writes to. See Store.GetStale.
type Replica struct {
	// DB is a connection pool on the replica (a hot standby fed by
	// streaming replication from the store's primary). Required.
	// postgresstore.ReplicaPool opens one. The store closes it on Close
	// only with Options.CloseDB.
	DB *sql.DB
	// MaxStaleness is how far behind the primary an answer of GetStale may
	// be. Default DefaultMaxStaleness (1s). It is also how long after a
	// logout on one instance the session may still pass a check on
	// another; the cookie of the browser that logged out is cleared at
	// once.
	MaxStaleness time.Duration
	// CheckInterval is how often the replica's lag is measured while
	// GetStale is in use (two one-row queries, one on each server).
	// Default MaxStaleness/4; it must be shorter than MaxStaleness.
	CheckInterval time.Duration
}

func (r *Replica) withDefaults() (*Replica, error) {
	if r == nil {
		return nil, nil
	}
	c := *r
	if c.DB == nil {
		return nil, errors.New("gormstore: Replica.DB is nil")
	}
	if c.MaxStaleness < 0 || c.CheckInterval < 0 {
		return nil, fmt.Errorf("gormstore: negative Replica.MaxStaleness %v or CheckInterval %v", c.MaxStaleness, c.CheckInterval)
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = max(c.MaxStaleness/4, time.Millisecond)
	}
	if c.CheckInterval >= c.MaxStaleness {
		return nil, fmt.Errorf("gormstore: Replica.CheckInterval %v must be shorter than MaxStaleness %v", c.CheckInterval, c.MaxStaleness)
	}
	return &c, nil
}

// ReplicaStats counts how GetStale answered since the store was created.
type ReplicaStats struct {
	ReplicaReads   uint64 // answered by the replica
	MissFallbacks  uint64 // the replica had no live entry: read from the primary
	LagFallbacks   uint64 // the replica was not known to be within MaxStaleness: read from the primary
	ErrorFallbacks uint64 // the replica failed: read from the primary
	// Staleness is how far behind the primary the replica may be now: the
	// time since the latest moment it is known to have caught up to. -1
	// when that was never measured.
	Staleness time.Duration
}

// replica measures the lag of a streaming replica and reads from it.
//
// Lag is measured by WAL position, which an idle primary does not
// inflate (the time since the last replayed transaction does): a sample
// reads the primary's current WAL write position L at time t0, then the
// replica's replay position R. Once R >= L the replica holds every commit
// that returned before t0, now and from then on (replay only moves
// forward), so a read from it at time t is at most t-t0 old. The newest
// such t0 is kept in caughtUp; GetStale uses the replica only while
// now-caughtUp <= MaxStaleness. A sample the replica has not reached yet
// waits in pending for a later R.
type replica struct {
	cfg   Replica
	reads *readPath
	epoch time.Time // monotonic origin of the nanosecond times below

	caughtUp atomic.Int64 // ns since epoch; 0: never
	lastUse  atomic.Int64 // ns since epoch of the latest GetStale
	kick     chan struct{}
	done     chan struct{}

	replicaReads, missFallbacks, lagFallbacks, errorFallbacks atomic.Uint64

	// Used by the sampler goroutine only.
	pending    []lsnSample
	lastSample int64
	failing    bool
}

type lsnSample struct {
	at  int64 // ns since epoch, taken before the primary was asked
	lsn uint64
}

func newReplica(cfg *Replica) *replica {
	return &replica{
		cfg:   *cfg,
		reads: newReadPath(cfg.DB, nil, false),
		epoch: time.Now(),
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

func (r *replica) now() int64 { return int64(time.Since(r.epoch)) }

// fresh reports whether a read from the replica now is within the bound.
func (r *replica) fresh(now int64) bool {
	c := r.caughtUp.Load()
	return c != 0 && now-c <= int64(r.cfg.MaxStaleness)
}

var _ storage.StaleReader = (*Store)(nil)

// MaxStaleness implements storage.StaleReader: Replica.MaxStaleness, or 0
// without a replica (GetStale is then Get).
func (s *Store) MaxStaleness() time.Duration {
	if s.replica == nil {
		return 0
	}
	return s.replica.cfg.MaxStaleness
}

// GetStale implements storage.StaleReader. With Options.Replica it reads
// the replica while the replica is known to be within MaxStaleness of the
// primary, and the primary otherwise, on a miss, and when the replica
// fails (those failures are counted in ReplicaStats, not returned).
// Without a replica it is Get. Failures are *storage.Error with Op
// "get-stale".
func (s *Store) GetStale(ctx context.Context, key string) ([]byte, error) {
	r := s.replica
	if r == nil {
		v, err := s.Get(ctx, key)
		return v, relabel(err, "get-stale")
	}
	if err := ctx.Err(); err != nil {
		return nil, storageErr("get-stale", err)
	}
	if storage.ValidateKey(key) != nil {
		return nil, storage.ErrNotFound
	}
	now := r.now()
	r.lastUse.Store(now)
	if !r.fresh(now) {
		r.lagFallbacks.Add(1)
		select { // the sampler may be idle: wake it
		case r.kick <- struct{}{}:
		default:
		}
	} else {
		v, err := s.readReplica(ctx, key)
		switch {
		case err == nil:
			r.replicaReads.Add(1)
			return v, nil
		case errors.Is(err, storage.ErrNotFound):
			r.missFallbacks.Add(1)
		case ctx.Err() != nil:
			return nil, storageErr("get-stale", ctx.Err())
		default:
			r.errorFallbacks.Add(1)
		}
	}
	v, err := s.Get(ctx, key)
	return v, relabel(err, "get-stale")
}

// readReplica is Get on the replica. A replica that does not answer within
// MaxStaleness is treated as failed: the primary answers instead.
func (s *Store) readReplica(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.replica.cfg.MaxStaleness, 100*time.Millisecond))
	defer cancel()
	rows, err := s.replica.reads.query(ctx, s.getQ, key, s.d.ts(s.opts.Now()))
	if err != nil {
		return nil, err
	}
	return scanValue("get-stale", rows)
}

// relabel gives a *storage.Error the operation op.
func relabel(err error, op string) error {
	var se *storage.Error
	if errors.As(err, &se) && se.Op != op {
		return &storage.Error{Op: op, Err: se.Err}
	}
	return err
}

// ReplicaStats reports how GetStale has answered; the zero value (with
// Staleness -1) without Options.Replica.
func (s *Store) ReplicaStats() ReplicaStats {
	r := s.replica
	if r == nil {
		return ReplicaStats{Staleness: -1}
	}
	st := ReplicaStats{
		ReplicaReads:   r.replicaReads.Load(),
		MissFallbacks:  r.missFallbacks.Load(),
		LagFallbacks:   r.lagFallbacks.Load(),
		ErrorFallbacks: r.errorFallbacks.Load(),
		Staleness:      -1,
	}
	if c := r.caughtUp.Load(); c != 0 {
		st.Staleness = time.Duration(r.now() - c)
	}
	return st
}

// sampleLoop measures the lag every CheckInterval while GetStale is in use,
// and at once when a GetStale finds no recent measurement. An unused
// replica costs no queries.
func (s *Store) sampleLoop() {
	r := s.replica
	defer close(r.done)
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if r.lastUse.Load() < r.lastSample {
				continue // not used since the last sample
			}
		case <-r.kick:
			if r.lastSample != 0 && r.now()-r.lastSample < int64(r.cfg.CheckInterval) {
				continue // the next tick comes soon enough
			}
		}
		s.sample()
	}
}

// sampleTimeout bounds each of a sample's two queries.
const sampleTimeout = 5 * time.Second

func (s *Store) sample() {
	r := s.replica
	at := r.now()
	r.lastSample = at
	primary, err := s.primaryLSN()
	if err != nil {
		s.sampleFailed("primary", err)
		return
	}
	replayed, ok, err := s.replayLSN()
	if err != nil {
		s.sampleFailed("replica", err)
		return
	}
	if !ok {
		s.sampleFailed("replica", errors.New("pg_last_wal_replay_lsn() is NULL: the server is not a streaming replica"))
		return
	}
	if r.failing {
		r.failing = false
		s.opts.Logger.Info("gormstore: replica lag measurable again", "table", s.opts.Table)
	}
	r.pending = append(r.pending, lsnSample{at: at, lsn: primary})
	// The newest sample the replica has reached is its new caught-up time;
	// samples older than the bound could not make it usable any more.
	keep := r.pending[:0]
	oldest := r.now() - int64(r.cfg.MaxStaleness)
	for _, p := range r.pending {
		switch {
		case p.lsn <= replayed:
			if p.at > r.caughtUp.Load() {
				r.caughtUp.Store(p.at)
			}
		case p.at >= oldest:
			keep = append(keep, p)
		}
	}
	r.pending = keep
}

func (s *Store) sampleFailed(where string, err error) {
	r := s.replica
	if s.ctx.Err() != nil || r.failing {
		return
	}
	r.failing = true
	// Reads go to the primary until a sample succeeds; say so once.
	s.opts.Logger.Warn("gormstore: cannot measure replica lag; session checks read from the primary", "table", s.opts.Table, "server", where, "err", err)
}

func (s *Store) primaryLSN() (uint64, error) {
	ctx, cancel := context.WithTimeout(s.ctx, sampleTimeout)
	defer cancel()
	var lsn string
	if err := s.db.WithContext(ctx).Raw(`SELECT pg_current_wal_lsn()::text`).Row().Scan(&lsn); err != nil {
		return 0, err
	}
	return parseLSN(lsn)
}

func (s *Store) replayLSN() (lsn uint64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, sampleTimeout)
	defer cancel()
	var v sql.NullString
	if err := s.replica.cfg.DB.QueryRowContext(ctx, `SELECT pg_last_wal_replay_lsn()::text`).Scan(&v); err != nil {
		return 0, false, err
	}
	if !v.Valid {
		return 0, false, nil
	}
	lsn, err = parseLSN(v.String)
	return lsn, err == nil, err
}

// parseLSN parses Postgres's pg_lsn text form, two hex halves "16/B374D848".
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("gormstore: bad WAL position %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("gormstore: bad WAL position %q", s)
	}
	return h<<32 | l, nil
}

// close waits for the sampler, which ends with the store's ctx, and
// closes the replica's prepared statements.
func (r *replica) close() {
	<-r.done
	r.reads.close()
}
