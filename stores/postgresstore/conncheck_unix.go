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
// it was idle, by peeking at its socket without blocking (Go's sockets are
// non-blocking). Connections that are not sockets are not checked.
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
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return true // never wait for data
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
