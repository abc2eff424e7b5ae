package storagetest_test

import (
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storagetest"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// Check your own storage.Store against the contract from one test
// function in your package (memstore stands in for your store here).
func Example() {
	testMyStore := func(t *testing.T) {
		storagetest.Run(t, storagetest.Harness{
			New: func(t *testing.T) storage.Store {
				s := memstore.New() // mystore.New(...); register t.Cleanup to close it
				return s
			},
		})
	}
	_ = testMyStore // func TestMyStore(t *testing.T) { ... } in your _test.go file
}
