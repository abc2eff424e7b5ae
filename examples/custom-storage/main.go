// Command custom-storage runs the example app on storage assembled for
// this app: the Redis store this module ships (stores/redisstore), wrapped
// in encryptedstore, a storage.Store written here that encrypts every
// value at rest with AES-256-GCM. Read encryptedstore/encryptedstore.go to
// write your own store, or your own wrapper around one.
//
//	go run ./examples/custom-storage
//
// Besides the variables of examples/basic (see examples/README.md):
//
//	REDIS_URL               the Redis server (default redis://127.0.0.1:6379/0)
//	REDIS_PREFIX            prefix of every key the app writes (default ginoauth-demo:)
//	STORAGE_ENCRYPTION_KEY  32 random bytes, base64 encoded, that seal the values
//	                        kept in Redis; REQUIRED in production, the same on every
//	                        instance (create one with `openssl rand -base64 32`).
//	                        Unset: a random one is generated and kept in
//	                        DATA_DIR/storage-key (mode 0600), with a warning.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/encryptedstore"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// DefaultRedisURL is a local Redis server's first database.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// The variables this example reads besides demoapp's.
const (
	EnvRedisURL      = "REDIS_URL"
	EnvRedisPrefix   = "REDIS_PREFIX"
	EnvEncryptionKey = "STORAGE_ENCRYPTION_KEY"
)

func main() {
	ctx, stop := demoapp.SignalContext() // Ctrl+C starts a graceful shutdown
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := demoapp.LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	redisURL := getenv(EnvRedisURL)
	if redisURL == "" {
		redisURL = DefaultRedisURL
	}
	redisOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("configuration: %s: %w", EnvRedisURL, err)
	}
	prefix := getenv(EnvRedisPrefix)
	if prefix == "" {
		prefix = "ginoauth-demo:"
	}
	key, keyFile, err := loadKey(getenv, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := cfg.Logger(stderr)
	slog.SetDefault(log) // indigo logs through the default logger
	cfg.WarnIfGeneratedSecret(stderr)
	warnIfGeneratedKey(stderr, keyFile)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set ADDR to change it): %w", cfg.Addr, err)
	}
	defer ln.Close()
	baseURL := cfg.BaseURL(ln.Addr())

	// The storage: a Redis client, the shipped Redis store on it, and the
	// encrypting wrapper around that. redisstore takes any
	// redis.UniversalClient, so a Sentinel or Cluster client works as well.
	// ContextTimeoutEnabled: each call ends with the library's storage
	// deadline (a stalled Redis answers 503, not a hung request).
	redisOpts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		return fmt.Errorf("connect to Redis at %s (set %s): %w", redisOpts.Addr, EnvRedisURL, err)
	}
	inner, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	if err != nil {
		return err
	}
	store, err := encryptedstore.New(inner, key) // Take, Lock and the session index: inner's, forwarded
	if err != nil {
		return err
	}

	network, err := demoapp.StartNetwork(cfg, log)
	if err != nil {
		return err
	}
	defer network.Close()
	clientConfig, err := network.ClientConfig(baseURL)
	if err != nil {
		return err
	}

	// From here on it is the same wiring as with the stores this module ships.
	client := indigoclient.New(clientConfig, store, network.ClientOptions(log))
	defer client.Close() // after the servers stop: it may be finishing a token save
	pageOpts := demoapp.PageOptions{BaseURL: baseURL, Network: network, Instance: "Redis storage, encrypted", Logger: log}
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  client,
		Storage:      store,
		CookieSecret: cfg.CookieSecret,
		BaseURL:      baseURL,
		LocalDomains: network.LocalDomains(), // the offline network's .test names; none on Bluesky
		SessionTTL:   cfg.SessionTTL,
		Logger:       log,
		ErrorHandler: demoapp.ErrorPages(pageOpts), // HTML pages for the library's failures
	})
	if err != nil {
		return err
	}
	defer mgr.Close()
	pages := demoapp.NewPages(mgr, pageOpts)
	r := demoapp.NewEngine()
	r.Use(pages.Middleware()...)
	r.Use(ginoauth.Middleware(mgr))
	mgr.Mount(r)
	pages.Mount(r)

	demoapp.Banner{
		URLs: []string{baseURL}, Network: network,
		Storage: "Redis at " + redisOpts.Addr + ", keys under " + prefix + ", values encrypted (AES-256-GCM)",
	}.Print(stdout)
	return demoapp.Serve(ctx, ln, r, log)
}

// loadKey returns the storage encryption key from STORAGE_ENCRYPTION_KEY,
// or else the one generated into dataDir/storage-key (creating it the first
// time), with the file's path to warn about.
func loadKey(getenv func(string) string, dataDir string) (key []byte, generatedFile string, err error) {
	if s := strings.TrimSpace(getenv(EnvEncryptionKey)); s != "" {
		key, err := decodeKey(s)
		if err != nil {
			return nil, "", &demoapp.ConfigError{Var: EnvEncryptionKey, Reason: err.Error() + "; create one with: openssl rand -base64 32"}
		}
		return key, "", nil
	}
	path := filepath.Join(dataDir, "storage-key")
	key, err = loadOrCreateKey(path)
	if err != nil {
		return nil, "", &demoapp.ConfigError{Var: EnvEncryptionKey, Reason: "unset, and the generated key could not be kept: " + err.Error()}
	}
	return key, path, nil
}

// decodeKey accepts standard or URL-safe base64, padded or not, of exactly
// encryptedstore.KeySize bytes.
func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != encryptedstore.KeySize {
				return nil, fmt.Errorf("must be %d bytes, base64 encoded (got %d bytes)", encryptedstore.KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("must be %d bytes, base64 encoded (not valid base64)", encryptedstore.KeySize)
}

// loadOrCreateKey reads the key in path, or creates one in a file only its
// owner can read. O_EXCL makes two instances starting together agree on
// one key (as demoapp does for the cookie secret).
func loadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s can be read by other users (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		key, err := decodeKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %v; delete it to have a new one made (values sealed with it are then lost)", path, err)
		}
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, encryptedstore.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKey(path) // another process won the race
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

// warnIfGeneratedKey prints a warning when the key was generated: fine on a
// laptop, wrong in production, where every instance must share one key
// managed like any other credential (lose it and every stored session is
// unreadable: users log in again).
func warnIfGeneratedKey(w io.Writer, file string) {
	if file == "" {
		return
	}
	line := strings.Repeat("!", 76)
	fmt.Fprintf(w, "%s\n"+
		"!!  WARNING: %s is not set. Using a generated development key\n"+
		"!!  kept in %s\n"+
		"!!  In production, set it to 32 random bytes, base64 encoded (for example\n"+
		"!!  `openssl rand -base64 32`), the same on every instance, from a secret store.\n"+
		"%s\n", line, EnvEncryptionKey, file, line)
}
