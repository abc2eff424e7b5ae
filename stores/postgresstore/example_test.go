package postgresstore_test

import (
	"log"
	"os"
	"time"

	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

// Open a store on Postgres; several app instances may share it. Pass it as
// ginoauth.Config.Storage.
func ExampleOpen() {
	store, err := postgresstore.Open(os.Getenv("DATABASE_URL"), postgresstore.Options{
		CleanupInterval: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
}
