package redisstore_test

import (
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// A store on one Redis server. Pass it as ginoauth.Config.Storage and to
// indigoclient.New; close the client when the app stops.
func ExampleNew() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        []string{"127.0.0.1:6379"},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  3 * time.Second,
		WriteTimeout: 3 * time.Second,
		// Commands end with their context (the library's StorageTimeout);
		// without it each call needs a goroutine of its own.
		ContextTimeoutEnabled: true,
	})
	defer rdb.Close()
	store, err := redisstore.New(rdb, redisstore.Options{Prefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	_ = store // ginoauth.Config{Storage: store, ...}
}

// The same store on Redis Cluster (several Addrs) or behind Sentinel
// (MasterName): every operation touches one key, so nothing else changes.
// On both, every write waits for the replicas of its primary (see Failover
// in the package documentation).
func ExampleNew_clusterAndSentinel() {
	cluster := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{"redis-0:6379", "redis-1:6379", "redis-2:6379"},
		ContextTimeoutEnabled: true,
	})
	defer cluster.Close()
	onCluster, _ := redisstore.New(cluster, redisstore.Options{})

	sentinel := redis.NewUniversalClient(&redis.UniversalOptions{
		MasterName:            "mymaster",
		Addrs:                 []string{"sentinel-0:26379", "sentinel-1:26379", "sentinel-2:26379"},
		ContextTimeoutEnabled: true,
	})
	defer sentinel.Close()
	behindSentinel, _ := redisstore.New(sentinel, redisstore.Options{})
	_, _ = onCluster, behindSentinel
}
