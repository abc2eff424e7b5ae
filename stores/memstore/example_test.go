package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// An in-memory store for tests and demos: everything is lost on restart and
// it is not shared between processes.
func ExampleNew() {
	store := memstore.New()
	ctx := context.Background()
	_ = store.Set(ctx, "session:1", []byte("alice"), time.Hour)
	v, _ := store.Get(ctx, "session:1")
	fmt.Println(string(v))
	// Output: alice
}
