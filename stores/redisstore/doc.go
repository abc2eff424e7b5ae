// Package redisstore is a storage.Store, storage.Taker, storage.Locker,
// storage.Indexer and storage.Counter on Redis (6.2 or newer) through
// github.com/redis/go-redis/v9. It takes a redis.UniversalClient, so the
// same store runs on a single server, behind Sentinel (a failover client)
// or on Redis Cluster:
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
//	defer rdb.Close()
//	store, err := redisstore.New(rdb, redisstore.Options{})
//
// The store does not own the client: close it yourself when you are done.
//
// # Keys
//
// Every key starts with Options.Prefix (default "ginoauth:"):
//
//	<prefix>kv:<key>     string      an entry; its Redis TTL is the entry's (or a
//	                                 storage.Counter counter, an integer with its window as TTL)
//	<prefix>lock:<name>  string      a lock lease: a random token, with the lease as TTL
//	<prefix>set:<set>    sorted set  an Indexer set: each member scored with its expiry
//	                                 in Unix milliseconds (+inf: never)
//
// Every command and script the store sends touches exactly one of these
// keys, so no two keys ever have to share a Redis Cluster hash slot and
// the store needs no hash tags. (A key or prefix that contains {braces} is
// hashed by what is inside them, as Redis Cluster always does; that only
// changes which shard holds it. A hash tag in Prefix would put every key on
// one shard.)
//
// # Behaviour
//
//   - Get is GET, Set is SET with PX (EX when the TTL is whole seconds,
//     which is the same to Redis), or a plain SET for ttl 0, which also
//     clears an earlier TTL. Delete is DEL. Expiry is Redis's own: an
//     expired key is never returned, whether or not Redis has reclaimed it.
//   - Take is GETDEL, atomic on the server: among concurrent takers on any
//     number of instances exactly one gets the value.
//   - Lock is SET NX PX with a random token, retried with a short backoff
//     (2ms growing to 50ms, jittered; waiters in the same process are woken
//     at once by Unlock). Each attempt runs detached from the caller's
//     cancellation, bounded by 5 seconds: an attempt the client abandoned
//     midway could still take the lease on the server, with nobody to
//     release it. If the caller gave up while an attempt was in flight, or
//     the attempt failed, the store gives back whatever it may have won.
//     Unlock is a Lua script that deletes the lease only if it still holds
//     this caller's token, so an Unlock after the lease lapsed never
//     releases the next holder's lock.
//   - Incr is a Lua script: INCRBY, then PEXPIRE if the key has no TTL
//     (INCRBY just created it), so increments never extend a counter's
//     window and no counter is ever left without one.
//   - AddMember, RemoveMember and Members are Lua scripts on the set's
//     sorted set, each atomic on the server. AddMember is ZADD with the
//     expiry as score; it also drops the set's expired members
//     (ZREMRANGEBYSCORE) and sets the key's own expiry (PEXPIREAT) to that
//     of its longest-lived member, so a set nobody touches again disappears
//     by itself. RemoveMember is ZREM, and adjusts that expiry. Members is
//     ZRANGEBYSCORE from now: expired members are never listed, whether or
//     not they have been dropped. Member expiry is measured by the Redis
//     server's clock (TIME), the same clock as entry TTLs and leases, so
//     app instances with skewed clocks still agree.
//   - Invalid keys, lock names, set names and members (see
//     storage.ValidateKey) are rejected by Set, Lock and AddMember; Get and
//     Take report them as not found and Members as an empty set (they
//     cannot have been stored), and Delete and RemoveMember ignore them.
//   - Every failure is a *storage.Error; only a missing or expired key
//     gives storage.ErrNotFound, so the library answers an outage with 503
//     rather than logging users out.
//
// The lock is as safe as the Redis deployment it is on: Redis replicates
// asynchronously, so a failover (Sentinel or Cluster) can lose a lease
// taken just before it, as it can lose any recent write.
//
// # Logging
//
// The store is silent unless Options.Logger is set. It then logs the one
// failure it cannot return to a caller: a lease it could not give back
// (which lapses by itself at the end of its TTL). Logs never contain keys,
// names or values.
package redisstore
