package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process of the test's own on a loopback
// port of its own, for fault tests that must never touch the shared server
// (DEBUG SLEEP, SIGSTOP, SIGKILL). It keeps nothing on disk but its log
// and, for a cluster node, its nodes.conf, in a directory of the test's.
type RedisServer struct {
	Addr string // 127.0.0.1:port
	Port int

	t    testing.TB
	dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited (and been waited for)
	logf   *os.File
}

// redisServerBinary returns the path of redis-server, or skips t.
func redisServerBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("tests with a Redis server of their own skipped: redis-server is not on PATH (Debian: apt-get install redis-server)")
	}
	return bin
}

// freePort returns a loopback TCP port nothing listens on now. Another
// process could take it before the caller does; StartRedisServer retries.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartRedisServer starts redis-server on a free loopback port with no
// persistence, DEBUG allowed, and the extra args (e.g. "--cluster-enabled",
// "yes"), waits until it answers, and stops it when the test ends. It skips
// t when redis-server is not installed.
func StartRedisServer(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	return startRedisServer(t, func() []string { return args })
}

// startRedisServer is StartRedisServer with the extra args made afresh for
// each try (a cluster node's bus port is free only by chance, as its port).
func startRedisServer(t testing.TB, extra func() []string) *RedisServer {
	t.Helper()
	redisServerBinary(t)
	var lastErr error
	for range 5 {
		args := extra()
		port := freePort(t)
		s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, t: t, dir: t.TempDir()}
		s.args = append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", s.dir,
			"--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
			// A replica syncs at once instead of after the default 5s.
			"--repl-diskless-sync-delay", "0",
		}, args...)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.kill)
			return s
		}
	}
	t.Fatalf("testdb: redis-server did not start: %v", lastErr)
	return nil
}

func (s *RedisServer) start() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// Files, not pipes, for its output: exec then starts no goroutines of
	// its own, and the log survives for a failing test to show.
	// Background: the process lives until kill, not until some request ends.
	cmd := exec.CommandContext(context.Background(), redisServerBinary(s.t), s.args...) //nolint:gosec // the test's own arguments
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // ends when the process does
	s.mu.Lock()
	s.cmd, s.exited, s.logf = cmd, exited, logf
	s.mu.Unlock()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited: // the port was taken, or bad arguments
		case <-time.After(20 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		s.kill()
		return fmt.Errorf("%v; log:\n%s", err, s.Log())
	}
}

// Log returns what the server logged.
func (s *RedisServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Pid is the server's process id, 0 when it is not running.
func (s *RedisServer) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill ends the server with SIGKILL, as a crash does: nothing it has not
// sent yet reaches anyone.
func (s *RedisServer) Kill() { s.kill() }

func (s *RedisServer) kill() {
	s.mu.Lock()
	cmd, exited, logf := s.cmd, s.exited, s.logf
	s.cmd, s.exited, s.logf = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // SIGKILL works on a stopped process too
	<-exited
	_ = logf.Close()
}

// Restart starts the server again after Kill, on the same port and
// directory (a cluster node rejoins with its nodes.conf).
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("testdb: restart redis-server on %s: %v", s.Addr, err)
	}
}

// Stop freezes the server with SIGSTOP: connections stay open and nothing
// is answered, as a hung host looks. Cont resumes it.
func (s *RedisServer) Stop() { s.signal(sigStop) }

// Cont resumes a server frozen by Stop.
func (s *RedisServer) Cont() { s.signal(sigCont) }

func (s *RedisServer) signal(sig os.Signal) {
	if sig == nil {
		s.t.Fatal("testdb: this system cannot freeze a process")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		if err := s.cmd.Process.Signal(sig); err != nil {
			s.t.Errorf("testdb: %v to redis-server on %s: %v", sig, s.Addr, err)
		}
	}
}

// Client returns a new client on the server (no retries), closed at
// cleanup. modify may change its options first.
func (s *RedisServer) Client(modify ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: s.Addr, MaxRetries: -1, ContextTimeoutEnabled: true}
	for _, m := range modify {
		m(o)
	}
	rdb := redis.NewClient(o)
	s.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Sleep makes the server sleep for d (DEBUG SLEEP: it answers nobody
// meanwhile) and returns once the sleep has begun. The returned channel is
// closed when the server answers again.
func (s *RedisServer) Sleep(d time.Duration) <-chan struct{} {
	s.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, ReadTimeout: d + 10*time.Second})
	done := make(chan struct{})
	s.t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		defer rdb.Close()
		err := rdb.Do(context.Background(), "debug", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 3, 64)).Err()
		if err != nil && !errors.Is(err, redis.ErrClosed) {
			s.t.Errorf("testdb: DEBUG SLEEP on %s: %v", s.Addr, err)
		}
	}()
	// The sleep has begun once a PING goes unanswered.
	probe := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, ReadTimeout: 50 * time.Millisecond})
	defer probe.Close()
	for {
		select {
		case <-done:
			return done
		default:
		}
		if err := probe.Ping(context.Background()).Err(); err != nil && strings.Contains(err.Error(), "timeout") {
			return done
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StartRedisPair starts a primary and a replica of it (each a
// RedisServer), and returns once the replica has synced and the primary
// counts it online (which comes a moment after the replica says its link
// is up).
func StartRedisPair(t testing.TB) (primary, replica *RedisServer) {
	t.Helper()
	primary = StartRedisServer(t)
	replica = StartRedisServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	rrdb := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rrdb.Close()
	prdb := redis.NewClient(&redis.Options{Addr: primary.Addr})
	defer prdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx := context.Background()
		info, err := rrdb.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			var pinfo string
			if pinfo, err = prdb.Info(ctx, "replication").Result(); err == nil && strings.Contains(pinfo, "state=online") {
				return primary, replica
			}
			info += pinfo
		}
		if time.Now().After(deadline) {
			t.Fatalf("testdb: the replica did not sync: %v\n%s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Promote makes a replica a primary (REPLICAOF NO ONE), as Sentinel does
// in a failover.
func (s *RedisServer) Promote() {
	s.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer rdb.Close()
	if err := rdb.Do(context.Background(), "replicaof", "no", "one").Err(); err != nil {
		s.t.Fatalf("testdb: promote %s: %v", s.Addr, err)
	}
}
