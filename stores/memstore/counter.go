package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Counter = (*Store)(nil)

// count is one storage.Counter counter.
type count struct {
	n         int64
	expiresAt time.Time
}

// Incr implements storage.Counter within this process: counters live apart
// from the entries, under the store's one lock.
func (s *Store) Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, &storage.Error{Op: "incr", Err: err}
	}
	if err := storage.ValidateKey(key); err != nil {
		return 0, &storage.Error{Op: "incr", Err: err}
	}
	if by < 1 || ttl <= 0 {
		return 0, &storage.Error{Op: "incr", Err: fmt.Errorf("by must be at least 1 and ttl positive (got %d, %v)", by, ttl)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.counts == nil {
		s.counts = make(map[string]count)
	}
	c, ok := s.counts[key]
	if !ok || !now.Before(c.expiresAt) {
		c = count{expiresAt: now.Add(ttl)} // a new window; later increments keep its expiry
	}
	c.n += by
	s.counts[key] = c
	s.wrote(now)
	return c.n, nil
}

// sweepCounts drops expired counters; s.mu is held.
func (s *Store) sweepCounts(now time.Time) {
	for k, c := range s.counts {
		if !now.Before(c.expiresAt) {
			delete(s.counts, k)
		}
	}
}
