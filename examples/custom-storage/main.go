// Command custom-storage runs the example app on a Storage written for this
// app: package redisstore, a storage.Store (with Taker and Locker) on
// Redis in about a hundred lines. Read redisstore.go to write your own for
// another database.
//
//	go run ./examples/custom-storage
//
// Besides the variables of examples/basic (see examples/README.md):
//
//	REDIS_URL     the Redis server (default redis://127.0.0.1:6379/0)
//	REDIS_PREFIX  prefix of every key the app writes (default ginoauth-demo:)
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/examples/custom-storage/redisstore"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
)

// DefaultRedisURL is a local Redis server's first database.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

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
	redisURL := getenv("REDIS_URL")
	if redisURL == "" {
		redisURL = DefaultRedisURL
	}
	redisOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("configuration: REDIS_URL: %w", err)
	}
	prefix := getenv("REDIS_PREFIX")
	if prefix == "" {
		prefix = "ginoauth-demo:"
	}
	log := cfg.Logger(stderr)
	slog.SetDefault(log) // indigo logs through the default logger
	cfg.WarnIfGeneratedSecret(stderr)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set ADDR to change it): %w", cfg.Addr, err)
	}
	defer ln.Close()
	baseURL := cfg.BaseURL(ln.Addr())

	// The custom storage: a Redis client and the Store on it.
	rdb := redis.NewClient(redisOpts)
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		return fmt.Errorf("connect to Redis at %s (set REDIS_URL): %w", redisOpts.Addr, err)
	}
	store := redisstore.New(rdb, redisstore.Options{Prefix: prefix})

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
	pageOpts := demoapp.PageOptions{BaseURL: baseURL, Network: network, Instance: "Redis storage", Logger: log}
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  client,
		Storage:      store,
		CookieSecret: cfg.CookieSecret,
		BaseURL:      baseURL,
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
	r.Use(mgr.Middleware())
	mgr.Mount(r)
	pages.Mount(r)

	demoapp.Banner{URLs: []string{baseURL}, Network: network, Storage: "Redis at " + redisOpts.Addr + ", keys under " + prefix}.Print(stdout)
	return demoapp.Serve(ctx, ln, r, log)
}
