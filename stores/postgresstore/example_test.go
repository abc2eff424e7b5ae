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

// Read session checks from a streaming replica: a check may see the
// primary as it was up to MaxStaleness ago, never older (a replica that
// lags further is not used), and a session it does not find there is
// looked up on the primary. Tokens, locks and every write stay on the
// primary.
func ExampleReplicaPool() {
	replica, err := postgresstore.ReplicaPool(os.Getenv("REPLICA_DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := postgresstore.Open(os.Getenv("DATABASE_URL"), postgresstore.Options{
		Replica: &postgresstore.Replica{DB: replica, MaxStaleness: time.Second},
	})
	if err != nil {
		_ = replica.Close()
		log.Fatal(err)
	}
	defer store.Close() // closes the replica pool too
}
