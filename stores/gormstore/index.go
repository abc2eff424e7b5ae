package gormstore

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// AddMember implements storage.Indexer with one INSERT ... ON CONFLICT
// statement on the set table: it adds the member, or renews its expiry.
func (s *Store) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return storageErr("add-member", err)
	}
	if err := storage.ValidateKey(set); err != nil {
		return storageErr("add-member", fmt.Errorf("set name: %w", err))
	}
	if err := storage.ValidateKey(member); err != nil {
		return storageErr("add-member", fmt.Errorf("member: %w", err))
	}
	if ttl < 0 {
		return storageErr("add-member", fmt.Errorf("gormstore: negative ttl %v", ttl))
	}
	var expires any // nil: never expires
	if ttl > 0 {
		expires = s.d.ts(s.opts.Now().Add(ttl))
	}
	return s.idempotent(ctx, func() error {
		if err := s.db.WithContext(ctx).Exec(s.q.addMember, set, member, expires).Error; err != nil {
			return storageErr("add-member", err)
		}
		return nil
	})
}

// RemoveMember implements storage.Indexer with one DELETE of the member's
// row.
func (s *Store) RemoveMember(ctx context.Context, set, member string) error {
	if err := ctx.Err(); err != nil {
		return storageErr("remove-member", err)
	}
	if storage.ValidateKey(set) != nil || storage.ValidateKey(member) != nil {
		return nil // AddMember never stores an invalid name
	}
	return s.idempotent(ctx, func() error {
		if err := s.db.WithContext(ctx).Exec(s.q.removeMember, set, member).Error; err != nil {
			return storageErr("remove-member", err)
		}
		return nil
	})
}

// Members implements storage.Indexer: a primary-key range lookup that
// leaves out expired members, so the answer never depends on cleanup.
// An invalid set name has no members (it cannot have been stored).
func (s *Store) Members(ctx context.Context, set string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, storageErr("members", err)
	}
	if storage.ValidateKey(set) != nil {
		return nil, nil
	}
	var out []string
	err := s.idempotent(ctx, func() error {
		var err error
		out, err = s.members(ctx, set)
		return err
	})
	return out, err
}

func (s *Store) members(ctx context.Context, set string) ([]string, error) {
	rows, err := s.read(ctx, s.q.members, s.membersQ, set, s.d.ts(s.opts.Now()))
	if err != nil {
		return nil, storageErr("members", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, storageErr("members", err)
		}
		out = append(out, m)
	}
	// A failure midway must not pass for a shorter list: the library would
	// miss sessions it was asked to end.
	if err := rows.Err(); err != nil {
		return nil, storageErr("members", err)
	}
	if err := rows.Close(); err != nil {
		return nil, storageErr("members", err)
	}
	return out, nil
}
