package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The Indexer scripts. Each touches one sorted set (KEYS[1]) and is atomic
// on the server, so concurrent changes to one set never overwrite each
// other, and each reads the server's clock so that every app instance
// measures member expiry the same way (scripts may call TIME since Redis 5).
//
// A member's score is its expiry in Unix milliseconds, or +inf. A member is
// live while its score is greater than now.
const (
	luaNow = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`
	// luaKeepUntilLastMember gives the set's key the expiry of its
	// longest-lived member (none if that one never expires), so a set that
	// nobody adds to again disappears once all its members have expired.
	// An empty sorted set is deleted by Redis itself.
	luaKeepUntilLastMember = `
local top = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
if #top == 2 then
	local last = tonumber(top[2])
	if top[2] == "inf" or last == nil or last == math.huge then
		redis.call("PERSIST", KEYS[1])
	else
		redis.call("PEXPIREAT", KEYS[1], string.format("%d", last))
	end
end
`
)

// addMemberScript: ARGV[1] member, ARGV[2] ttl in milliseconds (0: never),
// ARGV[3] the replicas flag (see luaReplicas). It also drops the set's
// expired members, so a set that is added to keeps no dead weight.
var addMemberScript = redis.NewScript(luaNow + luaReplicas + `
local ttl = tonumber(ARGV[2])
local score = "+inf"
if ttl > 0 then
	score = string.format("%d", now + ttl)
end
redis.call("ZADD", KEYS[1], score, ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("%d", now))
` + luaKeepUntilLastMember + `
return {replicas(ARGV[3])}`)

// removeMemberScript: ARGV[1] member, ARGV[2] the replicas flag.
var removeMemberScript = redis.NewScript(luaReplicas + `
if redis.call("ZREM", KEYS[1], ARGV[1]) == 1 then
` + luaKeepUntilLastMember + `
	return {replicas(ARGV[2])}
end
return {0}`)

// membersScript lists the members whose expiry is after now.
var membersScript = redis.NewScript(luaNow + `
return redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. string.format("%d", now), "+inf")`)

// AddMember implements storage.Indexer: ZADD with the expiry as score, in a
// script that also drops the set's expired members and keeps the set's key
// until its last member expires.
func (s *Store) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return storage.Wrap("add-member", err)
	}
	if err := storage.ValidateKey(set); err != nil {
		return storage.Wrap("add-member", fmt.Errorf("set name: %w", err))
	}
	if err := storage.ValidateKey(member); err != nil {
		return storage.Wrap("add-member", fmt.Errorf("member: %w", err))
	}
	if ttl < 0 {
		return storage.Wrap("add-member", fmt.Errorf("redisstore: negative ttl %v", ttl))
	}
	err := callErr(s, ctx, func(ctx context.Context) error {
		if s.ackWrites {
			_, err := s.acked(ctx, s.sets+set, addMemberScript, member, ms(ttl).Milliseconds())
			return err
		}
		return addMemberScript.Run(ctx, s.rdb, []string{s.sets + set}, member, ms(ttl).Milliseconds(), "0").Err()
	})
	return storage.Wrap("add-member", err)
}

// RemoveMember implements storage.Indexer with ZREM (in a script that
// adjusts the set key's expiry to its remaining members).
func (s *Store) RemoveMember(ctx context.Context, set, member string) error {
	if err := ctx.Err(); err != nil {
		return storage.Wrap("remove-member", err)
	}
	if storage.ValidateKey(set) != nil || storage.ValidateKey(member) != nil {
		return nil // AddMember never stores an invalid name
	}
	return storage.Wrap("remove-member", callErr(s, ctx, func(ctx context.Context) error {
		if s.ackWrites {
			_, err := s.acked(ctx, s.sets+set, removeMemberScript, member)
			return err
		}
		return removeMemberScript.Run(ctx, s.rdb, []string{s.sets + set}, member, "0").Err()
	}))
}

// Members implements storage.Indexer with ZRANGEBYSCORE from the server's
// now: expired members are left out whether or not they have been dropped.
// An invalid set name has no members (it cannot have been stored).
func (s *Store) Members(ctx context.Context, set string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Wrap("members", err)
	}
	if storage.ValidateKey(set) != nil {
		return nil, nil
	}
	// A missing key is an empty array, never redis.Nil: any error here is
	// a failure, not an empty set.
	got, err := call(s, ctx, func(ctx context.Context) ([]string, error) {
		return membersScript.Run(ctx, s.rdb, []string{s.sets + set}).StringSlice()
	})
	if err != nil {
		return nil, storage.Wrap("members", err)
	}
	return got, nil
}
