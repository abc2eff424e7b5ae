package ginoauth_test

import (
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

type storageCase struct {
	name string
	open func(testing.TB) storage.Store
}

// storages lists the storages end-to-end tests run on: memory, a SQLite file
// and the real Postgres (skipped with a message when its DSN is unset).
func storages(*testing.T) []storageCase {
	var out []storageCase
	for _, b := range testdb.All() {
		out = append(out, storageCase{b.Name, b.New})
	}
	return out
}
