package gormstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// maxDeadRetries caps the retries of one statement on dead connections.
const maxDeadRetries = 16

// idempotent runs op, and runs it again while it fails because the pooled
// connection it was sent on had died (deadConn), for statements that may
// run twice with the same outcome: reads, the Set and AddMember upserts,
// Delete and RemoveMember. After a database restart every idle connection
// in the pool is dead; each failed attempt drops one (the driver marks it
// closed), so it retries at most once per idle connection, plus one for a
// new connection. Take and Lock are never retried here: their statement
// may have run before the connection broke, and a second run would lose
// the taken value or the lease. (database/sql itself retries any statement
// whose driver proves it was never sent, driver.ErrBadConn; and
// postgresstore's connection check keeps dead connections from being
// used at all.)
func (s *Store) idempotent(ctx context.Context, op func() error) error {
	err := op()
	if err == nil || !deadConn(err) {
		return err
	}
	tries := 1
	if sqlDB, derr := s.db.DB(); derr == nil {
		tries += min(sqlDB.Stats().Idle, maxDeadRetries-1)
	}
	for range tries {
		if ctx.Err() != nil {
			return err
		}
		if err = op(); err == nil || !deadConn(err) {
			return err
		}
	}
	return err
}

// deadConn reports whether err says the connection a statement was sent on
// had been closed by the server or the network (rather than the statement
// failing, or the server refusing new connections).
func deadConn(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// Postgres's own reasons for ending a connection (pgx's error type
	// has SQLState; naming it here would link pgx into SQLite builds).
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		code := pg.SQLState()
		return code == "57P01" || code == "57P02" || strings.HasPrefix(code, "08") // admin or crash shutdown; connection exception
	}
	return false
}
