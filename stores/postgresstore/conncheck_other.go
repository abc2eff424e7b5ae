//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package postgresstore

import "net"

// peekDead does not check connections here; pgx's own ping of connections
// idle for over a second, and gormstore's retry of idempotent statements,
// still apply.
func peekDead(net.Conn) error { return nil }
