// Command basic is a small web app with AT Protocol (Bluesky) login and
// server-side sessions, built on ginoauth, with its sessions in a SQLite
// file.
//
//	go run ./examples/basic
//
// With no configuration it runs fully offline: it starts a built-in AT
// Protocol authorization server + PDS on loopback with the demo account
// alice.test, keeps its data in ./.ginoauth-demo, and generates a cookie
// secret there. Open the printed URL, log in as alice.test, and approve.
//
// To log in with a real Bluesky account from your machine:
//
//	ATPROTO_NETWORK=bluesky go run ./examples/basic
//
// In production, behind https (see examples/README.md for every variable):
//
//	PUBLIC_URL=https://myapp.example COOKIE_SECRET=... ADDR=:8080 go run ./examples/basic
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/prommetrics"
	"github.com/gin-atproto/oauth-sessions/stores/sqlitestore"
)

func main() {
	newKey := flag.Bool("new-client-key", false, "print a new P-256 private key for CLIENT_SECRET_KEY and exit")
	flag.Parse()
	if *newKey {
		key, err := demoapp.NewClientKey()
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		fmt.Println(key)
		return
	}

	ctx, stop := demoapp.SignalContext() // Ctrl+C starts a graceful shutdown
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run starts the app and serves it until ctx is done.
func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := demoapp.LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := cfg.Logger(stderr)
	slog.SetDefault(log) // indigo logs through the default logger
	cfg.WarnIfGeneratedSecret(stderr)

	// Listen first: the OAuth callback URL contains the port.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (set ADDR to change it): %w", cfg.Addr, err)
	}
	defer ln.Close()
	baseURL := cfg.BaseURL(ln.Addr())

	// Storage for login flows, sessions and OAuth tokens: a SQLite file.
	// Expired rows are invisible at once and deleted every 10 minutes.
	store, err := sqlitestore.Open(cfg.SQLitePath, sqlitestore.Options{CleanupInterval: 10 * time.Minute, Logger: log})
	if err != nil {
		return fmt.Errorf("open %s: %w", cfg.SQLitePath, err)
	}
	defer store.Close() // stops the cleanup goroutine and closes the file

	// The network to log in against: Bluesky, or the built-in offline one.
	network, err := demoapp.StartNetwork(cfg, log)
	if err != nil {
		return err
	}
	defer network.Close()
	clientConfig, err := network.ClientConfig(baseURL)
	if err != nil {
		return err
	}

	// Prometheus metrics of logins, session checks, storage failures and
	// token refreshes, in a registry of this app's own.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := prommetrics.New(reg)
	if err != nil {
		return err
	}

	// The core wiring: indigo's OAuth client and the session manager share
	// one store; the manager's middleware and routes go on the Gin engine.
	clientOpts := network.ClientOptions(log)
	clientOpts.Metrics = metrics // token refreshes
	client := indigoclient.New(clientConfig, store, clientOpts)
	defer client.Close() // after the servers stop: it may be finishing a token save
	pageOpts := demoapp.PageOptions{BaseURL: baseURL, Network: network, Logger: log}
	mgr, err := ginoauth.New(ginoauth.Config{
		OAuthClient:  client,
		Storage:      store,
		CookieSecret: cfg.CookieSecret,
		BaseURL:      baseURL,
		LocalDomains: network.LocalDomains(), // the offline network's .test names; none on Bluesky
		SessionTTL:   cfg.SessionTTL,
		Logger:       log,
		Metrics:      metrics,                      // logins, session checks, storage failures
		ErrorHandler: demoapp.ErrorPages(pageOpts), // HTML pages for the library's failures
		// The account switcher (up to MaxAccounts, default 5, per browser):
		// names for it come from the app; the library fetches no profiles.
		DescribeAccounts: demoapp.DescribeAccounts,
		// Native apps (MOBILE_REDIRECT_URIS): off when there are none.
		Mobile: ginoauth.MobileConfig{RedirectURIs: cfg.MobileRedirectURIs},
	})
	if err != nil {
		return demoapp.ManagerError(err) // names the variable of a refused setting
	}
	defer mgr.Close()
	pages := demoapp.NewPages(mgr, pageOpts)
	r := demoapp.NewEngine()
	r.Use(pages.Middleware()...) // recovery, request log, security headers
	// Before the session middleware, so that scrapes are not counted as
	// session checks. Expose /metrics only to your monitoring in production.
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	r.Use(ginoauth.Middleware(mgr)) // loads the session: ginoauth.CurrentUser(c)
	mgr.Mount(r)                    // /login, /oauth/callback, /api/session, /api/sessions, /api/logout, client metadata
	pages.Mount(r)                  // /, /pds/session, /pds/note, /devices/..., /logout

	demoapp.Banner{URLs: []string{baseURL}, Network: network, Storage: "SQLite file " + cfg.SQLitePath, Native: cfg.MobileRedirectURIs, Metrics: "/metrics"}.Print(stdout)
	return demoapp.Serve(ctx, ln, r, log)
}
