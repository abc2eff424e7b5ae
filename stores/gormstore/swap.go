package gormstore

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

var _ storage.Swapper = (*Store)(nil)

// Swap implements storage.Swapper with one UPDATE whose WHERE clause holds
// the comparison (the old value, and the row still live), so the database
// does compare and write in one step: a DELETE or a competing UPDATE that
// commits first leaves nothing for it to match.
func (s *Store) Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, storageErr("swap", err)
	}
	if storage.ValidateKey(key) != nil {
		return false, nil // cannot exist
	}
	if ttl < 0 {
		return false, storageErr("swap", fmt.Errorf("gormstore: negative ttl %v", ttl))
	}
	now := s.opts.Now()
	var expires any // nil: never expires
	if ttl > 0 {
		expires = s.d.ts(now.Add(ttl))
	}
	if old == nil {
		old = []byte{}
	}
	if new == nil {
		new = []byte{} // the column is NOT NULL
	}
	q := `UPDATE ` + quote(s.opts.Table) + ` SET "value" = ?, "expires_at" = ?, "updated_at" = ?
WHERE "key" = ? AND "value" = ? AND ("expires_at" IS NULL OR "expires_at" > ?)`
	ts := s.d.ts(now)
	res := s.db.WithContext(ctx).Exec(q, new, expires, ts, key, old, ts)
	if res.Error != nil {
		return false, storageErr("swap", res.Error)
	}
	return res.RowsAffected == 1, nil
}
