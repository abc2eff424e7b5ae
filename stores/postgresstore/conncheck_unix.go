//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package postgresstore

import (
	"errors"
	"io"
	"net"
	"syscall"
)

var errPendingData = errors.New("postgresstore: an idle connection has unread data (the server is closing it)")

// peekDead reports a connection that the server closed, or wrote to while
// it was idle, by peeking at its socket without blocking. Connections that
// are not sockets are not checked.
func peekDead(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var (
		n    int
		rerr error
	)
	// Control, not Read: pgx's background reader may still be blocked in
	// a read of this socket from the last statement (it stops only after
	// that read returns), holding the descriptor's read lock, which Read
	// would wait for until the server sends something: never, on an idle
	// connection. Peeking under Control takes no lock and, with
	// MSG_DONTWAIT, never blocks.
	err = raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	switch {
	case err != nil:
		return err
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK):
		return nil // nothing to read: alive as far as can be told
	case rerr != nil:
		return rerr
	case n == 0:
		return io.EOF
	default:
		return errPendingData
	}
}
