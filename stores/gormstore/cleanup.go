package gormstore

import (
	"context"
	"errors"
	"time"
)

// DeleteExpired runs one cleanup pass now: it deletes expired entries,
// expired set members and lapsed lock leases, at most
// Options.CleanupBatchSize rows per statement, until none are left. It
// returns how many entries (not set members or locks) it removed. Each
// statement is short, so readers and writers interleave with a long pass
// instead of waiting for it.
//
// The background cleanup (Options.CleanupInterval) also pauses after each
// full batch for as long as the batch took, so a large backlog uses at most
// half of the database's write capacity and the requests of the app keep
// their latency; DeleteExpired runs flat out.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	n, _, err := s.deleteExpired(ctx, false)
	return n, err
}

// deleteExpired is DeleteExpired, also counting the set members removed.
func (s *Store) deleteExpired(ctx context.Context, yield bool) (entries, members int64, err error) {
	now := s.d.ts(s.opts.Now())
	if entries, err = s.purge(ctx, s.q.purgeEntries, now, yield); err != nil {
		return entries, 0, err
	}
	if members, err = s.purge(ctx, s.q.purgeMembers, now, yield); err != nil {
		return entries, members, err
	}
	if _, err := s.purge(ctx, s.q.purgeLocks, now, yield); err != nil {
		return entries, members, err
	}
	return entries, members, nil
}

// maxCleanupPause bounds the pause between two background cleanup batches.
const maxCleanupPause = 250 * time.Millisecond

func (s *Store) purge(ctx context.Context, q string, now any, yield bool) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, storageErr("cleanup", err)
		}
		start := time.Now()
		res := s.db.WithContext(ctx).Exec(q, now, s.opts.CleanupBatchSize, now)
		if res.Error != nil {
			return total, storageErr("cleanup", res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < int64(s.opts.CleanupBatchSize) {
			return total, nil
		}
		if yield {
			t := time.NewTimer(min(time.Since(start), maxCleanupPause))
			select {
			case <-ctx.Done():
				t.Stop()
				return total, storageErr("cleanup", ctx.Err())
			case <-t.C:
			}
		}
	}
}

func (s *Store) cleanupLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		n, m, err := s.deleteExpired(s.ctx, true)
		if s.ctx.Err() != nil {
			return // closing: the cancelled pass is not a failure
		}
		if err != nil {
			// Keep going: the next tick may find the database back.
			s.opts.Logger.Error("gormstore: cleanup failed", "table", s.opts.Table, "err", err)
			continue
		}
		if n > 0 || m > 0 {
			s.opts.Logger.Debug("gormstore: removed expired entries", "table", s.opts.Table, "count", n, "members", m)
		}
	}
}

// Close stops the cleanup goroutine and the replica's lag sampler and
// waits for them to exit, then closes the connection pools (the *gorm.DB's,
// Reader and Replica.DB) if Options.CloseDB is set. It is safe to call more
// than once and from several goroutines; every call returns after the
// goroutines have exited, with the same result. Without CloseDB the pools
// stay open and the Store keeps working, only without background cleanup
// (and GetStale reads the primary once the last lag sample is older than
// MaxStaleness).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.done != nil {
			<-s.done
		}
		if s.reads != nil {
			s.reads.close()
		}
		if s.replica != nil {
			s.replica.close()
		}
		if s.opts.CloseDB {
			sqlDB, err := s.db.DB()
			if err == nil {
				err = sqlDB.Close()
			}
			if r := s.opts.Reader; r != nil && r != sqlDB {
				err = errors.Join(err, r.Close())
			}
			if s.replica != nil {
				err = errors.Join(err, s.replica.cfg.DB.Close())
			}
			s.closeErr = err
		}
	})
	return s.closeErr
}
