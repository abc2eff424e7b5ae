package sqlitestore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

// Open a store on a SQLite file. Pass it as ginoauth.Config.Storage.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	store, err := sqlitestore.Open(filepath.Join(dir, "sessions.db"), sqlitestore.Options{
		CleanupInterval: 10 * time.Minute, // reclaim space from expired entries
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx := context.Background()
	_ = store.Set(ctx, "greeting", []byte("hello"), time.Hour)
	v, _ := store.Get(ctx, "greeting")
	fmt.Println(string(v))
	// Output: hello
}
