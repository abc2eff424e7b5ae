//go:build unix

package testdb

import (
	"os"
	"syscall"
)

// The signals that freeze and resume a process (RedisServer.Stop, Cont).
var sigStop, sigCont os.Signal = syscall.SIGSTOP, syscall.SIGCONT
