package redisstore_test

import (
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/redisstore"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// A Redis-backed storage.Store, with the optional Take and Lock.
func ExampleNew() {
	opts, err := redis.ParseURL("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	var store storage.Store = redisstore.New(redis.NewClient(opts), redisstore.Options{Prefix: "myapp:"})
	_, isTaker := store.(storage.Taker)
	_, isLocker := store.(storage.Locker)
	_ = isTaker && isLocker
}
