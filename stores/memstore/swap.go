package memstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Swapper = (*Store)(nil)

// Swap implements storage.Swapper: under the store's lock, so the compare
// and the write are one step.
func (s *Store) Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, &storage.Error{Op: "swap", Err: err}
	}
	if ttl < 0 {
		return false, &storage.Error{Op: "swap", Err: fmt.Errorf("negative ttl %v", ttl)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, ok := s.entries[key]
	if !ok || !s.live(e, now) || !bytes.Equal(e.value, old) {
		return false, nil
	}
	e = entry{value: append([]byte(nil), new...)}
	if ttl > 0 {
		e.expiresAt = now.Add(ttl)
	}
	s.entries[key] = e
	s.wrote(now)
	return true, nil
}
