// Package demoapp is the shared part of the example apps in examples/: the
// configuration from environment variables, the AT Protocol network to log
// in against (Bluesky, or a built-in offline one), the HTML pages and their
// routes, and a server that shuts down gracefully.
//
// The examples' main.go files keep the part worth copying in view: opening a
// Storage, building the OAuth client and the ginoauth.Manager, and mounting
// them on a Gin engine. Everything here is ordinary app code that any app
// has in some form.
package demoapp

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// The environment variables the examples read. Every one is optional: with
// none set, the app runs fully offline against a built-in AT Protocol server.
//
//	ADDR              listen address (default 127.0.0.1:8080; port 0 picks a free port)
//	DATA_DIR          where the SQLite file and the generated cookie secret live
//	                  (default ./.ginoauth-demo)
//	COOKIE_SECRET     at least 32 bytes that seal the session cookie; REQUIRED in
//	                  production. Unset: a random one is generated and kept in
//	                  DATA_DIR/cookie-secret (mode 0600), with a warning.
//	SESSION_TTL       how long a login lasts without use: a Go duration ("12h") or days ("30d");
//	                  default 7d
//	LOG_LEVEL         debug, info, warn or error (default info)
//	ATPROTO_NETWORK   "local" (default without PUBLIC_URL): a built-in AT Protocol
//	                  authorization server + PDS on loopback with a demo account;
//	                  "bluesky": the real network, as a localhost development client
//	LOCAL_PDS_ADDR    listen address of the built-in server (default 127.0.0.1:0)
//	PUBLIC_URL        the app's public https origin, e.g. https://myapp.example:
//	                  logs in on the real network as a public OAuth client whose
//	                  client_id is PUBLIC_URL/oauth-client-metadata.json
//	CLIENT_SECRET_KEY with PUBLIC_URL: a multibase P-256 private key (z...) that
//	                  makes the app a confidential client (longer sessions);
//	                  create one with `go run ./examples/basic -new-client-key`
//	CLIENT_KEY_ID     the key's id in the app's JWKS; required with CLIENT_SECRET_KEY
//	OAUTH_SCOPES      space-separated scopes (default "atproto repo:com.example.ginoauth.note?action=create":
//	                  log in, and write the demo's notes, nothing else)
//	MOBILE_REDIRECT_URIS
//	                  space-separated redirect URIs of native apps; setting it turns
//	                  on the native-app routes (ginoauth.Config.Mobile.RedirectURIs;
//	                  default none: off). ginoauth.New checks them and refuses
//	                  schemes any app can claim (app://...): use an OS-verified https
//	                  link, a reverse-domain scheme (com.example.app:/oauth/callback),
//	                  or, for desktop apps, loopback (http://127.0.0.1/native/callback,
//	                  which matches any port; examples/native uses that one)
const (
	EnvAddr               = "ADDR"
	EnvDataDir            = "DATA_DIR"
	EnvCookieSecret       = "COOKIE_SECRET"
	EnvSessionTTL         = "SESSION_TTL"
	EnvLogLevel           = "LOG_LEVEL"
	EnvNetwork            = "ATPROTO_NETWORK"
	EnvLocalPDSAddr       = "LOCAL_PDS_ADDR"
	EnvPublicURL          = "PUBLIC_URL"
	EnvClientSecretKey    = "CLIENT_SECRET_KEY"
	EnvClientKeyID        = "CLIENT_KEY_ID"
	EnvScopes             = "OAUTH_SCOPES"
	EnvMobileRedirectURIs = "MOBILE_REDIRECT_URIS"
)

// Defaults of the configuration.
const (
	DefaultAddr         = "127.0.0.1:8080"
	DefaultDataDir      = ".ginoauth-demo"
	DefaultLocalPDSAddr = "127.0.0.1:0"
	DefaultScopes       = "atproto repo:" + NoteCollection + "?action=create"
)

// Network modes (ATPROTO_NETWORK).
const (
	// NetworkLocal runs a built-in authorization server + PDS (ginoauthtest)
	// on loopback, so the whole login works offline.
	NetworkLocal = "local"
	// NetworkBluesky logs in against the real AT Protocol network.
	NetworkBluesky = "bluesky"
)

// Config is the example apps' configuration, read from the environment by
// LoadConfig.
type Config struct {
	Addr       string // listen address
	DataDir    string // absolute path; created by LoadConfig
	SQLitePath string // DataDir/sessions.db, created empty with mode 0600
	Network    string // NetworkLocal or NetworkBluesky
	PublicURL  string // https origin, "" for a localhost development client

	// CookieSecret seals cookies. GeneratedSecret reports that it came from
	// DATA_DIR/cookie-secret rather than from COOKIE_SECRET.
	CookieSecret    string
	GeneratedSecret bool
	SecretFile      string // path of the generated secret, if any

	SessionTTL   time.Duration // 0 means the library's default (as long as the grant)
	LogLevel     slog.Level
	LocalPDSAddr string
	Scopes       []string

	// MobileRedirectURIs are the native apps' registered redirect URIs
	// (MOBILE_REDIRECT_URIS), for ginoauth.Config.Mobile.RedirectURIs; none
	// leaves the native-app flow off. ginoauth.New validates them;
	// ManagerError names the variable when it refuses one.
	MobileRedirectURIs []string

	// ClientKey and ClientKeyID make a confidential client (PUBLIC_URL only).
	ClientKey   atcrypto.PrivateKey
	ClientKeyID string
}

// ConfigError is a bad environment variable.
type ConfigError struct {
	Var    string // the variable's name
	Reason string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Reason }

// LoadConfig reads the configuration from getenv (os.Getenv in main; a map
// lookup in tests), checks it, creates the data directory and, if
// COOKIE_SECRET is unset, loads or creates the generated secret there. All
// problems with a variable are *ConfigError values naming it.
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	bad := func(k, format string, args ...any) (Config, error) {
		return Config{}, &ConfigError{Var: k, Reason: fmt.Sprintf(format, args...)}
	}
	cfg := Config{
		Addr:         orDefault(get(EnvAddr), DefaultAddr),
		LocalPDSAddr: orDefault(get(EnvLocalPDSAddr), DefaultLocalPDSAddr),
	}

	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return bad(EnvAddr, "want host:port such as 127.0.0.1:8080 (got %q)", cfg.Addr)
	}
	if _, _, err := net.SplitHostPort(cfg.LocalPDSAddr); err != nil {
		return bad(EnvLocalPDSAddr, "want host:port such as 127.0.0.1:2583 (got %q)", cfg.LocalPDSAddr)
	}

	level, err := parseLevel(get(EnvLogLevel))
	if err != nil {
		return bad(EnvLogLevel, "%v", err)
	}
	cfg.LogLevel = level

	if s := get(EnvSessionTTL); s != "" {
		ttl, err := parseTTL(s)
		if err != nil {
			return bad(EnvSessionTTL, "%v", err)
		}
		cfg.SessionTTL = ttl
	}

	cfg.MobileRedirectURIs = strings.Fields(get(EnvMobileRedirectURIs))

	cfg.Scopes = strings.Fields(orDefault(get(EnvScopes), DefaultScopes))
	if !contains(cfg.Scopes, "atproto") {
		return bad(EnvScopes, "must include the scope atproto (got %q)", strings.Join(cfg.Scopes, " "))
	}

	// Which network, and which kind of OAuth client.
	cfg.PublicURL = strings.TrimRight(get(EnvPublicURL), "/")
	network := strings.ToLower(get(EnvNetwork))
	switch {
	case network == "" && cfg.PublicURL != "":
		network = NetworkBluesky
	case network == "":
		network = NetworkLocal
	case network != NetworkLocal && network != NetworkBluesky:
		return bad(EnvNetwork, "want %q or %q (got %q)", NetworkLocal, NetworkBluesky, network)
	}
	cfg.Network = network
	if cfg.PublicURL != "" {
		if network == NetworkLocal {
			return bad(EnvPublicURL, "a public client logs in on the real network; unset %s or set it to %s", EnvNetwork, NetworkBluesky)
		}
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return bad(EnvPublicURL, "want an https origin such as https://myapp.example, without a path (got %q)", cfg.PublicURL)
		}
	}

	keyText, keyID := get(EnvClientSecretKey), get(EnvClientKeyID)
	switch {
	case keyText != "" && cfg.PublicURL == "":
		return bad(EnvClientSecretKey, "a confidential client needs %s: localhost development clients are always public", EnvPublicURL)
	case keyText != "" && keyID == "":
		return bad(EnvClientKeyID, "is required with %s (any short name, e.g. key-2026-01; change it when you rotate the key)", EnvClientSecretKey)
	case keyText == "" && keyID != "":
		return bad(EnvClientKeyID, "is set but %s is not", EnvClientSecretKey)
	case keyText != "":
		key, err := atcrypto.ParsePrivateMultibase(keyText)
		if err != nil {
			return bad(EnvClientSecretKey, "not a multibase private key (%v); create one with: go run ./examples/basic -new-client-key", err)
		}
		if _, ok := key.(*atcrypto.PrivateKeyP256); !ok {
			return bad(EnvClientSecretKey, "must be a P-256 key (AT Protocol OAuth uses ES256), not %T", key)
		}
		cfg.ClientKey, cfg.ClientKeyID = key, keyID
	}

	dir, err := filepath.Abs(orDefault(get(EnvDataDir), DefaultDataDir))
	if err != nil {
		return bad(EnvDataDir, "%v", err)
	}
	cfg.DataDir = dir
	cfg.SQLitePath = filepath.Join(dir, "sessions.db")
	if err := prepareDataDir(dir, cfg.SQLitePath); err != nil {
		return bad(EnvDataDir, "%v", err)
	}

	if s := getenv(EnvCookieSecret); s != "" {
		if len(s) < minSecretLength {
			return bad(EnvCookieSecret, "must be at least %d bytes of randomness (got %d); create one with: openssl rand -base64 48", minSecretLength, len(s))
		}
		cfg.CookieSecret = s
	} else {
		cfg.SecretFile = filepath.Join(dir, "cookie-secret")
		s, err := loadOrCreateSecret(cfg.SecretFile)
		if err != nil {
			return bad(EnvCookieSecret, "unset, and the generated secret could not be kept: %v", err)
		}
		cfg.CookieSecret, cfg.GeneratedSecret = s, true
	}
	return cfg, nil
}

// minSecretLength is the shortest cookie secret ginoauth.New accepts.
const minSecretLength = 32

// ManagerError is err from ginoauth.New, as a configuration error naming
// the environment variable when the refused setting came from one
// (MOBILE_REDIRECT_URIS: ginoauth checks the redirect URIs, and refuses
// schemes any app could claim). Other errors are returned unchanged.
func ManagerError(err error) error {
	var ce *ginoauth.ConfigurationError
	if errors.As(err, &ce) && ce.Field == "Mobile.RedirectURIs" {
		return fmt.Errorf("configuration: %w", &ConfigError{Var: EnvMobileRedirectURIs, Reason: ce.Reason})
	}
	return err
}

// Logger returns a text logger on w at the configured level.
func (cfg Config) Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: cfg.LogLevel}))
}

// BaseURL is the app's public origin for a server listening on addr: the
// PUBLIC_URL, or else http://127.0.0.1:<port>. A localhost development client
// must use a loopback IP, 127.0.0.1 (or [::1] for a server that listens only
// there), never "localhost", in its redirect URI; and the cookie is only sent
// back to the exact host the browser used, so the app is opened there too.
func (cfg Config) BaseURL(addr net.Addr) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL
	}
	host, port := "127.0.0.1", "8080"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
		if ta.IP.To4() == nil && ta.IP.IsLoopback() {
			host = "[::1]"
		}
	} else if _, p, err := net.SplitHostPort(addr.String()); err == nil {
		port = p
	}
	return "http://" + host + ":" + port
}

// WarnIfGeneratedSecret prints a loud warning to w when the cookie secret was
// generated: fine on a laptop, wrong in production, where every instance
// must share one secret that is managed like any other credential.
func (cfg Config) WarnIfGeneratedSecret(w io.Writer) {
	if !cfg.GeneratedSecret {
		return
	}
	line := strings.Repeat("!", 76)
	fmt.Fprintf(w, "%s\n"+
		"!!  WARNING: COOKIE_SECRET is not set. Using a generated development secret\n"+
		"!!  kept in %s\n"+
		"!!  In production, set COOKIE_SECRET to at least 32 random bytes (for example\n"+
		"!!  `openssl rand -base64 48`), the same on every instance, from a secret store.\n"+
		"%s\n", line, cfg.SecretFile, line)
}

// NewClientKey returns a new P-256 private key in the multibase form
// CLIENT_SECRET_KEY expects.
func NewClientKey() (string, error) {
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		return "", err
	}
	return k.Multibase(), nil
}

// prepareDataDir creates dir (0700) with a .gitignore that ignores
// everything in it, so running the demo from a git checkout never offers
// the database or the secret for a commit. It also creates the SQLite file
// with mode 0600 (SQLite would make it 0644, and it holds OAuth tokens);
// SQLite gives its -wal and -shm files the same mode.
func prepareDataDir(dir, dbPath string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	gi := filepath.Join(dir, ".gitignore")
	if _, err := os.Stat(gi); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(gi, []byte("# Created by the ginoauth examples: session database and cookie secret.\n*\n"), 0o600); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(dbPath, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// loadOrCreateSecret reads the secret in path, or creates one: 48 random
// bytes, base64url encoded, in a file only its owner can read. The file is
// created with O_EXCL, so two instances starting together cannot end up
// with different secrets.
func loadOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < minSecretLength {
			return "", fmt.Errorf("%s holds fewer than %d bytes; delete it to have a new one made", path, minSecretLength)
		}
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s can be read by other users (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateSecret(path) // another process won the race
	}
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return s, f.Close()
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("want debug, info, warn or error (got %q)", s)
}

// parseTTL accepts a Go duration ("90m", "12h") or a number of days ("30d").
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 3650 {
			return 0, fmt.Errorf("want a duration such as 12h or 30d (got %q)", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want a duration such as 12h or 30d (got %q)", s)
		}
	}
	if d < time.Minute {
		return 0, fmt.Errorf("must be at least a minute (got %v)", d)
	}
	return d, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
