package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
)

// The example app, logged in and out, with everything in Redis.
func TestAppOnRedis(t *testing.T) {
	addr := os.Getenv("GINOAUTH_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("GINOAUTH_TEST_REDIS_ADDR is not set: skipping the Redis example test (e.g. GINOAUTH_TEST_REDIS_ADDR=127.0.0.1:6379)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "ginoauth-test:" + hex.EncodeToString(b[:]) + ":"
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	countKeys := func() int {
		keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})

	env := map[string]string{
		"ADDR":         "127.0.0.1:0",
		"DATA_DIR":     filepath.Join(t.TempDir(), "data"),
		"LOG_LEVEL":    "error",
		"REDIS_URL":    "redis://" + addr + "/0",
		"REDIS_PREFIX": prefix,
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	base := demotest.URLsFromBanner(t, pr, 1, 30*time.Second)[0]
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()

	br := demotest.NewBrowser(t, base)
	if p := br.Login("alice.test", true); !p.Contains("@alice.test") || !p.Contains("Redis storage") {
		t.Fatalf("login: %.500s", p.Body)
	}
	// The session record and the OAuth session (tokens) are in Redis.
	if n := countKeys(); n < 2 {
		t.Fatalf("want the session and the OAuth session in Redis, found %d keys", n)
	}
	if p := br.Post("/pds/session", url.Values{}); p.Status != http.StatusOK || !p.Contains(demoapp.DemoAccount.DID) {
		t.Fatalf("PDS call: %d %.500s", p.Status, p.Body)
	}
	if p := br.Follow(br.Post("/logout", url.Values{})); !strings.Contains(p.Body, "Log in with your handle") {
		t.Fatalf("logout: %.300s", p.Body)
	}
	if n := countKeys(); n != 0 {
		t.Fatalf("logout left %d keys in Redis", n)
	}
}

func TestBadRedisURL(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "REDIS_URL": "mysql://nope"}
	err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("want a REDIS_URL error, got %v", err)
	}
}
