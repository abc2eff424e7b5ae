package ginoauth_test

import (
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

type storageCase struct {
	name string
	open func(testing.TB) ginoauth.Storage
}

// storages lists the storages end-to-end tests run on.
func storages(t *testing.T) []storageCase {
	return []storageCase{
		{"memory", func(testing.TB) ginoauth.Storage { return memstore.New() }},
	}
}
