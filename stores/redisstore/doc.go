// Package redisstore is a storage.Store, storage.Taker, storage.Locker
// (renewable: storage.RenewableLocker), storage.Indexer and storage.Counter
// on Redis (6.2 or newer) through
// github.com/redis/go-redis/v9. It takes a redis.UniversalClient, so the
// same store runs on a single server, behind Sentinel (a failover client)
// or on Redis Cluster:
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true, // see Deadlines
//	})
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
//     Where writes wait for the replicas (see Failover), Set, Delete and
//     Take are Lua scripts doing the same, followed by WAIT.
//   - Take is GETDEL, atomic on the server: among concurrent takers on any
//     number of instances exactly one gets the value.
//   - Lock takes a lease with a Lua script (SET PX with a random token,
//     unless another token holds it), waits for the replicas to
//     acknowledge it (see Failover), and retries with a short backoff
//     (2ms growing to 50ms, jittered; waiters in the same process are woken
//     at once by Unlock). Each attempt runs detached from the caller's
//     cancellation, bounded by 5 seconds: an attempt the client abandoned
//     midway could still take the lease on the server, with nobody to
//     release it. If the caller gave up while an attempt was in flight, or
//     the attempt failed, the store gives back whatever it may have won.
//     An attempt that go-redis retried after its first try won still
//     wins. Unlock is a Lua script that deletes the lease only if it still
//     holds this caller's token, so an Unlock after the lease lapsed never
//     releases the next holder's lock. Renew (storage.RenewableLocker) is a
//     Lua script that extends the lease (PEXPIRE) only while it holds the
//     caller's token; an expired lease is gone, so it is never brought
//     back. The library's refresh and device locks are 6 s leases renewed
//     every 2 s, so an instance that dies holding one blocks that session
//     for about 5 s.
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
// # Deadlines
//
// Every call returns when its context ends, with a *storage.Error wrapping
// the context's error: the library bounds each storage operation by
// Config.StorageTimeout and answers 503 when it passes. go-redis ignores
// context deadlines unless the client is built with ContextTimeoutEnabled
// (a command then waits for the client's ReadTimeout and WriteTimeout, 3s
// each by default, and its retries); so on a client without it (New tells
// from Options() of a *redis.Client, failover client, *redis.ClusterClient
// or *redis.Ring, and assumes it of any other client), each call runs in a
// goroutine of its own and the caller gets the context's error at its
// deadline. That goroutine finishes when Redis answers or the client gives
// up, and its result is dropped: the operation may still have happened, as
// after any timeout. Build the client with ContextTimeoutEnabled: then
// nothing outlives the call and no goroutine is started. Measured with a
// 5-second DEBUG SLEEP (internal/rediscluster TestStorageDeadline): a
// session check and a PDS call answer 503 after 3.0s, the default
// StorageTimeout, on a client built without it; before, both waited out the
// stall (4.96s) and answered 200.
//
// On a cluster client, a failed call also has the client reload the
// cluster's layout (go-redis does it in the background, at most every
// 200ms): go-redis reloads it by itself only on a MOVED reply, which a dead
// primary never sends, and would otherwise keep sending its slots there
// until ClusterStateReloadInterval (60s by default) has passed.
//
// # Failover
//
// Redis replicates asynchronously: a primary acknowledges a write before
// its replicas have it, and a failover (Sentinel, or Redis Cluster's own)
// loses what the promoted replica did not get. For this library the
// dangerous writes are a refresh lock's lease and the save of the tokens a
// refresh rotated: a lost lease lets a second instance refresh the same
// token, a lost save makes the next refresh present the spent one, and the
// authorization server answers either by ending the session (a 401 and a
// new login for the user).
//
// The failure model the store guarantees: of a shard (a primary and its
// replicas), one node is lost at a time: the primary crashes (SIGKILL) or
// is failed over by force (CLUSTER FAILOVER FORCE), while its replicas
// are up and copying it. Under it, no write the store reported done is
// lost, so no refresh token is presented twice:
//
//   - Lock does not return a lease before every replica of the lease's
//     primary has acknowledged it (WAIT, on the connection that wrote it,
//     which is the only one WAIT covers; a cluster client would send a
//     WAIT of its own to every primary). If they do not within
//     Options.AckTimeout (default 1s), Lock gives the lease back and fails
//     with ErrNotReplicated: the caller answers 503 rather than refresh
//     under a lease that a failover can lose. Renew waits the same way: a
//     renewal the replicas did not acknowledge is a failure (the lease may
//     be longer on the primary than on them), and the holder counts its
//     lease from its last acknowledged renewal, which a failover keeps.
//     A failover slower than the renewed lease's margin (about 4 s; a
//     killed primary takes cluster-node-timeout and more) leaves the
//     leases on that shard unrenewed, and their holders stop (see
//     "Token refresh across instances" in the README).
//     Options.UnreplicatedLeases turns this off.
//   - On a cluster client or a failover (Sentinel) client, Set, Delete,
//     Take, AddMember, RemoveMember and Unlock wait the same way
//     (Options.Writes: WritesAuto; WritesAcked and WritesUnacked choose for
//     any client). A write that was not acknowledged fails with
//     ErrNotReplicated; it may still be on the primary, like a write that
//     timed out.
//   - Which replicas: on Redis Cluster, those the cluster lists for the
//     primary and has not marked failed. Listed, not merely connected: in
//     the moment after CLUSTER FAILOVER FORCE, the old primary still takes
//     itself for the primary and still lists its old replica, which no
//     longer copies it, so every write there fails rather than vanishes.
//     Elsewhere, the replicas connected (online) to the primary. A primary
//     without replicas (a single server, a cluster without replicas) is
//     not waited for at all: on a single server the script counts no
//     replica and no WAIT is sent (a lease still takes WATCH and UNWATCH
//     around its script; other writes stay single commands).
//   - Each waited write costs three more round trips (WATCH, to reach the
//     key's primary over one connection, following a cluster redirect;
//     WAIT; UNWATCH) and the replica's acknowledgement. Reads are
//     unchanged. BenchmarkAcks measures it.
//
// What the model leaves out, and so what can still be lost:
//
//   - A replica the cluster has marked failed is not waited for, so that
//     one dead replica does not stop its primary's writes. If it comes back
//     and is promoted, with the data it had, after its primary is lost
//     (cluster-replica-validity-factor allows that for about ten times
//     cluster-node-timeout), the writes it missed are lost: two faults.
//   - A read on the primary can see a write that failed with
//     ErrNotReplicated. A caller must not take such a read as the write
//     done: the OAuth client's save of rotated tokens, when it retries and
//     finds its tokens stored, stores them again until a write is
//     acknowledged (it took the read as saved until the harness's
//     lagging-replica phase lost 1 to 3 sessions a run to it).
//   - Behind Sentinel, the old primary keeps no list of replicas: after a
//     forced promotion it waits for none until it learns of the new
//     primary. Set min-replicas-to-write 1 on the primaries to close that
//     window.
//
// Measured by the failover harness (internal/rediscluster, TestFailover,
// a step of .ci/run): three app instances with cluster clients of their
// own on a six-node cluster on loopback (cluster-node-timeout 3s), 200
// sessions under bounded load (12 workers: session checks, PDS calls,
// forced refreshes; a few hundred requests a second), every access token
// expired at each fault, and a refresh holding its lease, its token
// request held back, while the lease's primary fails over; each phase
// ends with a refresh of every session from its stored tokens (a session
// whose stored refresh token is spent is lost). Three runs each, on a
// shared 2-core machine, with the defaults and with the acknowledgements
// off (GINOAUTH_FAILOVER_ACKS=off):
//
//	GINOAUTH_FAILOVER=1 go test -count=1 -run '^TestFailover$' -v ./internal/rediscluster/
//	GINOAUTH_FAILOVER=1 GINOAUTH_FAILOVER_ACKS=off go test -count=1 -run '^TestFailover$' -v ./internal/rediscluster/
//
//	                         sessions lost  401 answers  503 answers    slowest check
//	FAILOVER FORCE           0, 0, 0        0, 0, 0      3, 3, 2        125ms
//	  acknowledgements off   3, 3, 0        56, 15, 0    0, 0, 0        226ms
//	primary killed           0, 0, 0        0, 0, 0      360, 422, 308  1.80s
//	  acknowledgements off   0, 0, 0        0, 0, 0      414, 382, 356  1.79s
//	primary frozen 5s        0, 0, 0        0, 0, 0      39, 14, 12     3.03s
//	  acknowledgements off   0, 0, 0        0, 0, 0      11, 39, 12     3.02s
//	replica lagging, then
//	primary killed           0, 0, 0        0, 0, 0      10, 11, 8      1.73s
//	  acknowledgements off   1, 1, 1        0, 0, 0      5, 5, 32       1.79s
//
// In every phase the model covers, with the defaults, each refresh token
// was granted once and presented once: no second grant, no replay, over
// 2,300 to 2,800 rotations a run. The held refresh's lease survived the
// failover (the second instance waited for it) and its token was presented
// once. The replica took over 0.2s after FAILOVER FORCE and 5.1s to 6.4s
// after the kill; until then the killed primary's slots answer 503. A
// session check never took longer than StorageTimeout (3s, against the
// frozen primary); a PDS call that needed a refresh took up to 5.3s there,
// the bound of one lease attempt. With the replica lagging, Lock answered
// 503 every time; with the acknowledgements off it handed the lease out,
// and the second instance's refresh ended that session. (Before the OAuth
// client stored a read-back save again, that phase lost 2, 1 and 3
// sessions with the defaults.)
//
// # Logging
//
// The store is silent unless Options.Logger is set. It then logs the one
// failure it cannot return to a caller: a lease it could not give back
// (which lapses by itself at the end of its TTL), and New warns once about
// a client that ignores context deadlines. Logs never contain keys, names
// or values.
package redisstore
