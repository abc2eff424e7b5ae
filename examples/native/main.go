// Command native is a small desktop "app" that logs in through the example
// backend exactly as a phone app would, following RFC 8252 (OAuth 2.0 for
// Native Apps). The app is a public client of the backend, never of the AT
// Protocol authorization server: the backend keeps the OAuth tokens and
// DPoP keys, and the app gets only a session token of the backend's.
//
// Start the backend with a loopback redirect URI registered, then the app:
//
//	MOBILE_REDIRECT_URIS=http://127.0.0.1/native/callback go run ./examples/basic
//	go run ./examples/native
//
// The app makes a PKCE code verifier and its S256 challenge, and a random
// state; listens on a loopback port the OS picks; asks the backend to start
// a login (POST /api/auth/mobile-start) with the redirect URI
// http://127.0.0.1:<port>/native/callback (the backend matches loopback
// redirect URIs on any port, RFC 8252 section 7.3); opens the system browser
// at the authorization URL it gets back; receives the browser's redirect
// with a one-time code; redeems the code with the verifier
// (POST /api/auth/mobile-token) for a session token; calls the backend's API
// with it (GET /api/session); rotates it (POST /api/auth/mobile-refresh) and
// calls again with the new one; and logs out (POST /api/logout). It prints
// each step, and never the token or the code: only a fingerprint, the first
// bytes of their SHA-256.
//
// Flags, each with an environment variable as its default:
//
//	-backend URL   BACKEND_URL    the backend's origin (default http://127.0.0.1:8080)
//	-handle H      HANDLE         the account to log in as (default alice.test, the
//	                              offline demo account of examples/basic)
//	-no-browser    NO_BROWSER=1   only print the login URL, to open by hand (headless)
//	-timeout D     LOGIN_TIMEOUT  how long to wait for the browser (default 5m)
//
// The authorization URL is always printed, so the login works without a
// desktop too: open it in any browser on the same machine (the redirect goes
// to this machine's loopback address).
//
// A real app keeps the session token in the OS's credential store (Keychain,
// Keystore, Credential Manager, libsecret), never in a file or a log; this
// one keeps it in memory and forgets it when it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults of the options.
const (
	DefaultBackendURL = "http://127.0.0.1:8080"
	DefaultHandle     = "alice.test"
	DefaultTimeout    = 5 * time.Minute
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// options are the app's settings, from flags and the environment.
type options struct {
	Backend   string
	Handle    string
	NoBrowser bool
	Timeout   time.Duration
}

// parseOptions reads the flags in args; each flag's default comes from its
// environment variable, then from the built-in default.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	env := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	noBrowser := false
	if v := env("NO_BROWSER", ""); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return options{}, fmt.Errorf("NO_BROWSER: want 1 or 0 (got %q)", v)
		}
		noBrowser = b
	}
	timeout := DefaultTimeout
	if v := env("LOGIN_TIMEOUT", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return options{}, fmt.Errorf("LOGIN_TIMEOUT: want a duration such as 2m (got %q)", v)
		}
		timeout = d
	}

	fs := flag.NewFlagSet("native", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.Backend, "backend", env("BACKEND_URL", DefaultBackendURL), "the backend's origin (env BACKEND_URL)")
	fs.StringVar(&o.Handle, "handle", env("HANDLE", DefaultHandle), "the account to log in as (env HANDLE)")
	fs.BoolVar(&o.NoBrowser, "no-browser", noBrowser, "only print the login URL; do not open a browser (env NO_BROWSER=1)")
	fs.DurationVar(&o.Timeout, "timeout", timeout, "how long to wait for the browser to come back (env LOGIN_TIMEOUT)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: native [flags]\n\nLogs in through the example backend as a native app would (RFC 8252).\nStart the backend with MOBILE_REDIRECT_URIS=http://127.0.0.1/native/callback.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	if o.Timeout < time.Second {
		return options{}, fmt.Errorf("timeout: must be at least a second (got %v)", o.Timeout)
	}
	if strings.TrimSpace(o.Handle) == "" {
		return options{}, errors.New("handle: say which account to log in as (-handle you.bsky.social)")
	}
	return o, nil
}

// run is the whole app: the login and every step after it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	app, err := NewApp(o.Backend, stdout)
	if err != nil {
		return err
	}
	app.Wait = o.Timeout
	browser := SystemBrowser(stdout)
	if o.NoBrowser {
		browser = PrintOnly
	}
	fmt.Fprintf(stdout, "Native app: logging in through %s as %s.\n\n", app.Backend, o.Handle)
	if _, err := app.Run(ctx, o.Handle, browser); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nDone. Tokens and codes are shown only as fingerprints (sha256:...), never in full.")
	return nil
}
