package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
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
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// The example app, logged in and out, with everything in Redis and every
// value in Redis encrypted.
func TestAppOnRedis(t *testing.T) {
	addr := testdb.RedisAddr(t)
	prefix := testdb.RedisPrefix(t)
	rdb := testdb.RedisClient(t)
	ctx := context.Background()
	keys := func() []string {
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{
		"ADDR":         "127.0.0.1:0",
		"DATA_DIR":     dataDir,
		"LOG_LEVEL":    "error",
		"REDIS_URL":    "redis://" + addr + "/0",
		"REDIS_PREFIX": prefix,
	}
	runCtx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		err := run(runCtx, func(k string) string { return env[k] }, pw, &stderr)
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
	// The session record and the OAuth session (tokens) are in Redis, and
	// no value there shows what it holds.
	var values int
	for _, k := range keys() {
		v, err := rdb.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) || (err != nil && strings.Contains(err.Error(), "WRONGTYPE")) {
			continue // gone since, or not a value (a lock lease, the account's set of sessions)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, prefix+"kv:") {
			continue
		}
		values++
		for _, plain := range []string{demoapp.DemoAccount.DID, "alice", "access_token", "refresh_token"} {
			if bytes.Contains(v, []byte(plain)) {
				t.Errorf("the value under %s holds %q in the clear", k, plain)
			}
		}
	}
	if values < 2 {
		t.Fatalf("want the session and the OAuth session in Redis, found %d values among %q", values, keys())
	}
	if p := br.Follow(br.Post("/pds/session", url.Values{})); p.Status != http.StatusOK || !p.Contains(demoapp.DemoAccount.DID) {
		t.Fatalf("PDS call: %d %.500s", p.Status, p.Body)
	}
	if p := br.Follow(br.Post("/logout", url.Values{})); !strings.Contains(p.Body, "Log in with your handle") {
		t.Fatalf("logout: %.300s", p.Body)
	}
	// Logout took the session record, the OAuth session and the account's
	// set of sessions. The library keeps a session's coarse last-seen time
	// (seen:...) and the login rate limits' counters (rl:..., under a
	// keyed hash of the address) until their own TTLs: those may stay, but
	// not for ever.
	for _, k := range keys() {
		if !strings.HasPrefix(k, prefix+"kv:seen:") && !strings.HasPrefix(k, prefix+"kv:rl:") {
			t.Errorf("logout left %s in Redis", k)
		} else if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s has no TTL (%v): it would stay for ever", k, ttl)
		}
	}

	// Without STORAGE_ENCRYPTION_KEY, the app made a key, kept it where only
	// its owner can read it, and said so.
	info, err := os.Stat(filepath.Join(dataDir, "storage-key"))
	if err != nil {
		t.Fatalf("generated key file: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("generated key file mode %v, want 0600", info.Mode().Perm())
	}
	if !strings.Contains(stderr.String(), "STORAGE_ENCRYPTION_KEY is not set") {
		t.Errorf("no warning about the generated key in:\n%s", stderr.String())
	}
}

// TestGeneratedKeyKept: the generated key is made once and read back after
// a restart, so stored sessions survive it; a key in the environment wins.
func TestGeneratedKeyKept(t *testing.T) {
	dir := t.TempDir()
	none := func(string) string { return "" }
	k1, file, err := loadKey(none, dir)
	if err != nil || file == "" || len(k1) != 32 {
		t.Fatalf("first start: %d-byte key, file %q, %v", len(k1), file, err)
	}
	k2, _, err := loadKey(none, dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("restart: another key (%v)", err)
	}
	fromEnv := bytes.Repeat([]byte{7}, 32)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		k, file, err := loadKey(func(k string) string {
			if k == EnvEncryptionKey {
				return enc.EncodeToString(fromEnv)
			}
			return ""
		}, dir)
		if err != nil || file != "" || !bytes.Equal(k, fromEnv) {
			t.Errorf("key from %s: %x, file %q, %v", EnvEncryptionKey, k, file, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "storage-key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadKey(none, dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a key file others can read: %v, want a refusal", err)
	}
}

// A bad key stops the app with a message naming the variable, before it
// connects to anything.
func TestBadEncryptionKey(t *testing.T) {
	for name, val := range map[string]string{
		"not base64": "not base64 at all!",
		"too short":  base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!")),
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{"DATA_DIR": t.TempDir(), EnvEncryptionKey: val, "REDIS_URL": "redis://127.0.0.1:1/0"}
			err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
			var ce *demoapp.ConfigError
			if !errors.As(err, &ce) || ce.Var != EnvEncryptionKey {
				t.Fatalf("want a configuration error naming %s, got %v", EnvEncryptionKey, err)
			}
		})
	}
}

func TestBadRedisURL(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "REDIS_URL": "mysql://nope"}
	err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("want a REDIS_URL error, got %v", err)
	}
}
