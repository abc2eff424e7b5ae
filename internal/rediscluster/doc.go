// Package rediscluster holds the library's end-to-end tests on Redis: the
// app (internal/apptest) with its sessions on a Redis Cluster, the storage
// deadline against a stalled server, and the failover harness.
//
//   - TestAppOnCluster runs login, session checks, a refresh under
//     concurrency from three instances, the device list and logout
//     everywhere on the cluster that GINOAUTH_TEST_REDIS_CLUSTER names
//     (bash scripts/ci/redis-cluster.sh start; .ci/run does), and is
//     skipped with that hint when it is unset.
//
//   - TestStorageDeadline stalls a redis-server of its own (DEBUG SLEEP)
//     under an app whose client was built without ContextTimeoutEnabled.
//
//   - TestFailover (GINOAUTH_FAILOVER=1, its own step in .ci/run) starts a
//     six-node cluster of its own, puts three app instances under bounded
//     load on it, fails primaries over while a refresh holds its lease,
//     and prints sessions lost, answers by status and refresh grants per
//     rotation:
//
//     GINOAUTH_FAILOVER=1 go test -count=1 -run '^TestFailover$' -v ./internal/rediscluster/
package rediscluster
