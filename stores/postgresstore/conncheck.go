package postgresstore

import (
	"context"
	"database/sql/driver"
	"net"

	"github.com/jackc/pgx/v5"
)

// checkIdle is run by database/sql (through pgx's ResetSession hook)
// before it hands out a pooled connection again. A connection whose server
// went away while it sat in the pool (a restart, a crash, a failover, a
// proxy that dropped it) has its end-of-stream, or the server's last
// "terminating connection" message, waiting in the socket. Without this
// check the next statement is written into that dead socket and fails
// with "unexpected EOF", after the point where anyone can tell whether
// the server ran it; database/sql then cannot retry, so the first request
// after the database came back failed. Discarding the connection here,
// before anything is sent, makes database/sql take another one (or dial a
// new one), which is safe for every statement, Take and Lock included.
//
// The check peeks at the socket without blocking (one system call, no
// round trip); pgx itself also pings a connection idle for over a second.
func checkIdle(_ context.Context, conn *pgx.Conn) error {
	if err := peekDead(netConn(conn.PgConn().Conn())); err != nil {
		return driver.ErrBadConn
	}
	return nil
}

// netConn unwraps a TLS connection to the socket under it: any record the
// server sends to an idle connection (an alert before it closes) means the
// connection is over all the same.
func netConn(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}
