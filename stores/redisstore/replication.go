package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is wrapped by the *storage.Error of a write whose
// primary's replicas did not all acknowledge it within Options.AckTimeout.
// The write may still be on the primary, where a failover could lose it:
// the caller must take it as failed, as after a timeout, and the library
// answers 503. Lock gives such a lease back.
var ErrNotReplicated = errors.New("redisstore: the replicas did not acknowledge the write in time")

// luaReplicas defines replicas(flag) for the write scripts: 0 unless flag
// is "1", else how many replicas the caller must wait for after the
// script's write. On Redis Cluster: the replicas the cluster lists for this
// primary and does not mark failed. The list is what matters, not the
// connections: in the moment after its replica took over (CLUSTER FAILOVER
// FORCE), the old primary still believes itself primary and still lists
// that replica, which no longer copies it, so the write is refused rather
// than made where it will vanish. A replica marked failed is not waited
// for, so that a dead replica does not stop its primary's writes.
// Elsewhere: the replicas online (INFO replication), the only list a plain
// server keeps. (Scripts may call INFO and CLUSTER; WAIT they may not.)
const luaReplicas = `
local function replicas(flag)
	if flag ~= "1" then
		return 0
	end
	local n = 0
	if string.find(redis.call("INFO", "cluster"), "cluster_enabled:1", 1, true) then
		for _, line in ipairs(redis.call("CLUSTER", "REPLICAS", redis.call("CLUSTER", "MYID"))) do
			local flags = string.match(line, "^%S+ %S+ (%S+)")
			if not flags or not string.find("," .. flags .. ",", ",fail,", 1, true) then
				n = n + 1
			end
		end
	else
		for _ in string.gmatch(redis.call("INFO", "replication"), "state=online") do
			n = n + 1
		end
	end
	return n
end
`

// The acknowledged forms of Set, Delete and Take: the write, then
// {results..., replicas}.
var (
	// setScript: ARGV[1] value, ARGV[2] ttl in ms (0: none), ARGV[3] flag.
	setScript = redis.NewScript(luaReplicas + `
if ARGV[2] == "0" then
	redis.call("SET", KEYS[1], ARGV[1])
else
	redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
end
return {replicas(ARGV[3])}`)
	// deleteScript: ARGV[1] flag.
	deleteScript = redis.NewScript(luaReplicas + `
redis.call("DEL", KEYS[1])
return {replicas(ARGV[1])}`)
	// takeScript: ARGV[1] flag; {1, value, replicas}, or {0, "", 0} when
	// there was nothing to take (and so no write to wait for).
	takeScript = redis.NewScript(luaReplicas + `
local v = redis.call("GETDEL", KEYS[1])
if not v then
	return {0, "", 0}
end
return {1, v, replicas(ARGV[1])}`)
)

// acked runs script (one whose last argument is the replicas flag and whose
// reply ends with replicas(flag)) with args and "1" on one connection to
// key's primary, then waits there for that many replicas (WAIT), and
// returns the reply without the count. go-redis's Watch picks the
// connection and follows a cluster redirect; WAIT must run on the
// connection that wrote (it waits for that connection's last write), which
// a command of its own would not: on a cluster client it would even go to
// every primary. Fewer acknowledgements than asked is ErrNotReplicated.
func (s *Store) acked(ctx context.Context, key string, script *redis.Script, args ...any) ([]any, error) {
	var out []any
	ran := false
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		ran = true
		res, err := script.Run(ctx, tx, []string{key}, append(args, "1")...).Slice()
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return errors.New("redisstore: empty script reply")
		}
		n, ok := res[len(res)-1].(int64)
		if !ok {
			return fmt.Errorf("redisstore: unexpected script reply %v", res)
		}
		out = res[:len(res)-1]
		if n == 0 {
			return nil // a primary without replicas, or nothing written
		}
		acks, err := tx.Wait(ctx, int(n), s.ackTimeout).Result()
		if err != nil {
			return err
		}
		if acks < n {
			return fmt.Errorf("%w (%d of %d within %v)", ErrNotReplicated, acks, n, s.ackTimeout)
		}
		return nil
	}, key)
	if err == nil && !ran {
		// go-redis's ClusterClient.Watch can give up without an error
		// (seen on a closed client): the write never ran.
		return nil, errWriteNotRun
	}
	return out, err
}

// errWriteNotRun: Watch returned without running the write.
var errWriteNotRun = errors.New("redisstore: the Redis client did not run the write (is it closed?)")

// takeAcked is Take's acknowledged form: GETDEL, then WAIT if it deleted.
func (s *Store) takeAcked(ctx context.Context, key string) ([]byte, error) {
	res, err := s.acked(ctx, key, takeScript)
	if err != nil {
		return nil, err
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("redisstore: unexpected take reply %v", res)
	}
	if found, _ := res[0].(int64); found == 0 {
		return nil, redis.Nil
	}
	v, ok := res[1].(string)
	if !ok {
		return nil, fmt.Errorf("redisstore: unexpected take reply %v", res)
	}
	return []byte(v), nil
}

// failsOver reports whether rdb is a client for a deployment that fails
// over by itself: a cluster client, or a failover (Sentinel) client, which
// go-redis builds as a *redis.Client whose Options().Addr is
// "FailoverClient".
func failsOver(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case interface{ Options() *redis.ClusterOptions }:
		return true
	case interface{ Options() *redis.Options }:
		o := c.Options()
		return o != nil && o.Addr == "FailoverClient"
	}
	return false
}
