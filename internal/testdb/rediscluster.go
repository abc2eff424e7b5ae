package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// RedisClusterEnv names the environment variable listing the test Redis
// Cluster's nodes, comma separated, e.g. the output of
// `bash scripts/ci/redis-cluster.sh addrs`, which also starts one.
const RedisClusterEnv = "GINOAUTH_TEST_REDIS_CLUSTER"

// RedisClusterAddrs returns the test cluster's node addresses, or skips t
// when RedisClusterEnv is unset.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := os.Getenv(RedisClusterEnv)
	if addrs == "" {
		t.Skip("Redis Cluster tests skipped: set " + RedisClusterEnv +
			" (e.g. " + RedisClusterEnv + "=$(bash scripts/ci/redis-cluster.sh start >/dev/null && bash scripts/ci/redis-cluster.sh addrs))")
	}
	return strings.Split(addrs, ",")
}

// RedisClusterClient returns a new cluster client (a connection pool of
// its own, as another app instance has) on the test cluster, closed at
// cleanup, with ContextTimeoutEnabled unless modify turns it off. It skips
// t when RedisClusterEnv is unset.
func RedisClusterClient(t testing.TB, modify ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{Addrs: RedisClusterAddrs(t), ContextTimeoutEnabled: true}
	for _, m := range modify {
		m(o)
	}
	c := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// RedisClusterPrefix returns a key prefix of the test's own on the test
// cluster, and deletes every key under it, on every primary, when the test
// (with its subtests) ends. It skips t when RedisClusterEnv is unset.
func RedisClusterPrefix(t testing.TB) string {
	t.Helper()
	addrs := RedisClusterAddrs(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "ginoauth-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		// A client of its own: the test may have closed its clients.
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			// One key per UNLINK: a cluster node refuses keys of several slots in one.
			iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := node.Unlink(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
		if err != nil {
			t.Errorf("testdb: delete the Redis Cluster keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// RedisClusterPair returns two stores on one fresh prefix of the test
// cluster through two cluster clients, as two app instances have. It skips
// t when RedisClusterEnv is unset.
func RedisClusterPair(t testing.TB) (storage.Store, storage.Store) {
	t.Helper()
	prefix := RedisClusterPrefix(t)
	return RedisClusterOn(t, prefix), RedisClusterOn(t, prefix)
}

// RedisClusterOn returns a store on prefix through a new cluster client.
func RedisClusterOn(t testing.TB, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(RedisClusterClient(t), redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return s
}

// RedisCluster is a Redis Cluster of the test's own: three primaries and
// three replicas, each a RedisServer on free loopback ports, with
// cluster-node-timeout 3000 ms, for failover tests that must not disturb
// the shared test cluster. It is stopped when the test ends.
type RedisCluster struct {
	Nodes []*RedisServer
	t     testing.TB
}

// RedisClusterNodeTimeout is the cluster-node-timeout of StartRedisCluster.
const RedisClusterNodeTimeout = 3 * time.Second

// StartRedisCluster starts a cluster (redis-cli --cluster create) and
// returns once every node serves and every replica has synced. It skips t
// when redis-server is not installed.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	c := &RedisCluster{t: t}
	hosts := []string{"--cluster", "create"}
	for range 6 {
		n := startRedisServer(t, func() []string {
			return []string{
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(RedisClusterNodeTimeout.Milliseconds())),
				"--cluster-port", strconv.Itoa(freePort(t)),
			}
		})
		c.Nodes = append(c.Nodes, n)
		hosts = append(hosts, n.Addr)
	}
	hosts = append(hosts, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", hosts...).CombinedOutput(); err != nil {
		t.Fatalf("testdb: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatalf("testdb: the new cluster: %v", err)
	}
	return c
}

// Addrs are the nodes' addresses.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Node returns the node at addr, or nil.
func (c *RedisCluster) Node(addr string) *RedisServer {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Client returns a new cluster client on the cluster (ContextTimeoutEnabled
// unless modify turns it off), closed at cleanup.
func (c *RedisCluster) Client(modify ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	o := &redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true}
	for _, m := range modify {
		m(o)
	}
	cc := redis.NewClusterClient(o)
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// nodeDo runs one command on one node with a short timeout.
func nodeDo(addr string, args ...any) (any, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return rdb.Do(ctx, args...).Result()
}

// NodeDo runs one command on the node at addr (not through the cluster).
func (c *RedisCluster) NodeDo(addr string, args ...any) (any, error) { return nodeDo(addr, args...) }

// running are the nodes whose process is up and not frozen by the test.
func (c *RedisCluster) running() []*RedisServer {
	var out []*RedisServer
	for _, n := range c.Nodes {
		if n.Pid() != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Shard returns the primary that serves key's slot, as the running nodes
// see it, and its replica (nil if it has none).
func (c *RedisCluster) Shard(key string) (primary, replica *RedisServer, err error) {
	var lastErr error
	for _, n := range c.running() {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, ReadTimeout: 2 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		var shards []redis.ClusterShard
		if err == nil {
			shards, err = rdb.ClusterShards(ctx).Result()
		}
		cancel()
		_ = rdb.Close()
		if err != nil {
			lastErr = err
			continue
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start > slot || slot > r.End {
					continue
				}
				for _, node := range sh.Nodes {
					addr := "127.0.0.1:" + strconv.FormatInt(node.Port, 10)
					switch {
					case node.Role == "master" && node.Health == "online":
						primary = c.Node(addr)
					case node.Role == "replica" && node.Health == "online":
						replica = c.Node(addr)
					}
				}
				if primary != nil {
					return primary, replica, nil
				}
			}
		}
		lastErr = fmt.Errorf("slot %d not served", slot)
	}
	return nil, nil, fmt.Errorf("testdb: no node says who serves %q: %w", key, lastErr)
}

// Serving reports whether every running node says cluster_state:ok.
func (c *RedisCluster) Serving() bool {
	for _, n := range c.running() {
		v, err := nodeDo(n.Addr, "cluster", "info")
		if s, _ := v.(string); err != nil || !strings.Contains(s, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// WaitServing waits until every running node says cluster_state:ok.
func (c *RedisCluster) WaitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !c.Serving() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not reach cluster_state:ok within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// WaitHealthy waits until all six nodes run, the cluster serves, three of
// them are primaries and every replica's link to its primary is up.
func (c *RedisCluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why string
	for {
		why = c.unhealthy()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster is not healthy after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *RedisCluster) unhealthy() string {
	if len(c.running()) != len(c.Nodes) {
		return "a node is down"
	}
	if !c.Serving() {
		return "not every node says cluster_state:ok"
	}
	primaries := 0
	for _, n := range c.Nodes {
		v, err := nodeDo(n.Addr, "info", "replication")
		info, _ := v.(string)
		switch {
		case err != nil:
			return n.Addr + ": " + err.Error()
		case strings.Contains(info, "role:master"):
			primaries++
			if !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
				return n.Addr + ": a primary without its replica online"
			}
		case !strings.Contains(info, "master_link_status:up"):
			return n.Addr + ": a replica not in sync"
		}
	}
	if primaries != 3 {
		return fmt.Sprintf("%d primaries", primaries)
	}
	return ""
}
