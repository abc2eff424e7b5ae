package testdb

import "syscall"

// procAttr makes a test's redis-server die with the test binary, even when
// the binary is killed before its cleanups run (a go test timeout).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
