//go:build !unix

package testdb

import "os"

// No such signals here: RedisServer.Stop and Cont fail the test.
var sigStop, sigCont os.Signal
