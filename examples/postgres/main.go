// Command postgres runs the example app as several instances that share one
// Postgres database, one cookie secret and one authorization server, the
// way a load-balanced deployment does. A session made on one instance is
// valid on every other.
//
//	go run ./examples/postgres
//
// It starts INSTANCES (default 2) servers on consecutive ports from ADDR
// (default 127.0.0.1:8080, so :8080 and :8081). Log in on the first, then
// open the second: you are logged in there too. Browsers send a host's
// cookies to every port of it, and the second instance finds the session in
// the database. Each instance has its own connection pool, as separate
// processes would.
//
// Besides the variables of examples/basic (see examples/README.md):
//
//	DATABASE_URL    Postgres DSN (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
//	DATABASE_TABLE  table for the key-value data (default ginoauth_kv; locks go in <table>_locks)
//	INSTANCES       number of app instances, 1 to 10 (default 2)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/prommetrics"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

// DefaultDatabaseURL is the local development database.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

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
	dsn := getenv("DATABASE_URL")
	if dsn == "" {
		dsn = DefaultDatabaseURL
	}
	instances := 2
	if s := getenv("INSTANCES"); s != "" {
		if instances, err = strconv.Atoi(s); err != nil || instances < 1 || instances > 10 {
			return fmt.Errorf("configuration: INSTANCES: want a number from 1 to 10 (got %q)", s)
		}
	}
	log := cfg.Logger(stderr)
	slog.SetDefault(log) // indigo logs through the default logger
	cfg.WarnIfGeneratedSecret(stderr)

	// One authorization server for all instances, like the real network.
	network, err := demoapp.StartNetwork(cfg, log)
	if err != nil {
		return err
	}
	defer network.Close()

	listeners, err := listen(cfg.Addr, instances)
	if err != nil {
		return err
	}
	var urls []string
	servers := make([]func(context.Context) error, instances)
	for i, ln := range listeners {
		defer ln.Close()
		name := fmt.Sprintf("instance %d of %d", i+1, instances)
		ilog := log.With("instance", i+1)

		// Each instance opens its own pool on the shared database.
		store, err := postgresstore.Open(dsn, postgresstore.Options{
			Table:           getenv("DATABASE_TABLE"),
			CleanupInterval: 10 * time.Minute,
			Logger:          ilog,
		})
		if err != nil {
			return fmt.Errorf("open the database (DATABASE_URL): %w", err)
		}
		defer store.Close()

		baseURL := cfg.BaseURL(ln.Addr())
		clientConfig, err := network.ClientConfig(baseURL)
		if err != nil {
			return err
		}
		// Each instance has its metrics in a registry of its own, as
		// separate processes would: Prometheus scrapes every instance.
		reg := prometheus.NewRegistry()
		metrics, err := prommetrics.New(reg)
		if err != nil {
			return err
		}
		clientOpts := network.ClientOptions(ilog)
		clientOpts.Metrics = metrics // token refreshes
		client := indigoclient.New(clientConfig, store, clientOpts)
		defer client.Close() // after the servers stop: it may be finishing a token save
		pageOpts := demoapp.PageOptions{BaseURL: baseURL, Network: network, Instance: name + " · Postgres", Logger: ilog}
		mgr, err := ginoauth.New(ginoauth.Config{
			OAuthClient:  client,
			Storage:      store,
			CookieSecret: cfg.CookieSecret, // the same on every instance
			BaseURL:      baseURL,
			LocalDomains: network.LocalDomains(), // the offline network's .test names; none on Bluesky
			SessionTTL:   cfg.SessionTTL,
			Logger:       ilog,
			Metrics:      metrics,                      // logins, session checks, storage failures
			ErrorHandler: demoapp.ErrorPages(pageOpts), // HTML pages for the library's failures
			// Native apps (MOBILE_REDIRECT_URIS): off when there are none.
			Mobile: ginoauth.MobileConfig{RedirectURIs: cfg.MobileRedirectURIs},
		})
		if err != nil {
			return demoapp.ManagerError(err) // names the variable of a refused setting
		}
		defer mgr.Close()
		pages := demoapp.NewPages(mgr, pageOpts)
		r := demoapp.NewEngine()
		r.Use(pages.Middleware()...)
		r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))) // before the session middleware
		r.Use(ginoauth.Middleware(mgr))
		mgr.Mount(r)
		pages.Mount(r)

		urls = append(urls, baseURL)
		servers[i] = func(ctx context.Context) error { return demoapp.Serve(ctx, ln, r, ilog) }
	}

	demoapp.Banner{URLs: urls, Network: network, Storage: "Postgres, shared by all instances", Native: cfg.MobileRedirectURIs, Metrics: "/metrics"}.Print(stdout)
	if instances > 1 {
		fmt.Fprintf(stdout, "Log in on %s, then open %s: the session is shared.\n\n", urls[0], urls[1])
	}
	return serveAll(ctx, servers)
}

// listen opens n listeners on consecutive ports from addr (all on random
// ports when addr's port is 0).
func listen(addr string, n int) ([]net.Listener, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("ADDR: bad port %q", portText)
	}
	var lns []net.Listener
	for i := range n {
		p := 0
		if port != 0 {
			p = port + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen for instance %d (set ADDR to change the ports): %w", i+1, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveAll runs every server until ctx is done or one of them fails, then
// shuts them all down gracefully.
func serveAll(ctx context.Context, servers []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, serve := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = serve(ctx)
			cancel() // one failed or stopped: stop the others too
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
