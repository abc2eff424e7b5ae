package refpds

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Environment variables read by this package. The env file that start.sh
// writes uses the same names.
const (
	// EnvFileVar names the env file to read instead of [DefaultEnvFile].
	EnvFileVar = "GINOAUTH_REFPDS_ENV"
	// CacheVar is the scripts' install and run directory
	// (default $HOME/.cache/ginoauth-refpds).
	CacheVar = "GINOAUTH_REFPDS_CACHE"
	// RequireVar, when "1" or "true", makes [ForTest] fail instead of skip.
	RequireVar = "GINOAUTH_REFPDS_REQUIRE"
	// PDSURLVar holds the PDS's loopback URL. When it is set in the process
	// environment, [FromEnv] takes everything from the process environment
	// and reads no file.
	PDSURLVar = "GINOAUTH_REFPDS_PDS_URL"
)

// StartHint is the command that installs and starts the server, from the
// repository root.
const StartHint = "bash scripts/refpds/install.sh && bash scripts/refpds/start.sh"

// ErrNotRunning is wrapped by the errors of [FromEnv] when no reference PDS
// is running (no env file, or the recorded server does not answer).
var ErrNotRunning = errors.New("reference PDS is not running")

// Account is a test account on the reference PDS.
type Account struct {
	// Name is the short name given to start.sh ("alice"); the handle is
	// Name + ".test".
	Name     string
	Handle   syntax.Handle
	DID      syntax.DID
	Password string
	Email    string
}

// Env describes a running reference PDS, as written by start.sh.
type Env struct {
	// PDSURL is where the PDS listens: http://127.0.0.1:<port>.
	PDSURL string
	// Hostname is the PDS's public hostname ("pds.test").
	Hostname string
	// Issuer is the authorization server's issuer and the PDS's public URL:
	// "https://" + Hostname, no port.
	Issuer string
	// PLCURL is the in-memory PLC directory the PDS uses
	// (http://localhost:<port>); tests rarely need it.
	PLCURL string
	// PID is the server's process id (informational).
	PID int
	// File is the env file this Env was read from ("" for the process
	// environment).
	File string

	mu       sync.Mutex
	accounts []Account
}

// DefaultEnvFile is where start.sh writes its env file:
// $GINOAUTH_REFPDS_CACHE/run/env, by default
// $HOME/.cache/ginoauth-refpds/run/env.
func DefaultEnvFile() string {
	cache := os.Getenv(CacheVar)
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(".cache", "ginoauth-refpds", "run", "env")
		}
		cache = filepath.Join(home, ".cache", "ginoauth-refpds")
	}
	return filepath.Join(cache, "run", "env")
}

// FromEnv finds the running reference PDS: from the process environment when
// GINOAUTH_REFPDS_PDS_URL is set, else from the env file named by
// GINOAUTH_REFPDS_ENV, else from [DefaultEnvFile]. It checks that the server
// answers /xrpc/_health. When the server is not running the error wraps
// [ErrNotRunning] and its message says how to start it.
func FromEnv() (*Env, error) {
	var (
		vals map[string]string
		file string
	)
	if os.Getenv(PDSURLVar) != "" {
		vals = make(map[string]string)
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "GINOAUTH_REFPDS_") {
				vals[k] = v
			}
		}
	} else {
		file = os.Getenv(EnvFileVar)
		if file == "" {
			file = DefaultEnvFile()
		}
		f, err := os.Open(file) //nolint:gosec // the path is the test operator's own env file
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: no env file at %s; start it with: %s", ErrNotRunning, file, StartHint)
		}
		if err != nil {
			return nil, fmt.Errorf("refpds: %w", err)
		}
		defer f.Close()
		vals, err = parseEnvFile(f)
		if err != nil {
			return nil, fmt.Errorf("refpds: %s: %w", file, err)
		}
	}
	env, err := fromValues(vals)
	if err != nil {
		where := file
		if where == "" {
			where = "environment"
		}
		return nil, fmt.Errorf("refpds: %s: %w", where, err)
	}
	env.File = file
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := env.Health(ctx); err != nil {
		return nil, fmt.Errorf("%w: %s does not answer (%v); restart it with: bash scripts/refpds/stop.sh && %s",
			ErrNotRunning, env.PDSURL, err, StartHint)
	}
	return env, nil
}

// ForTest returns the running reference PDS, or skips the test with the
// message of [FromEnv] (how to start the server). With GINOAUTH_REFPDS_REQUIRE
// set to 1 or true it fails the test instead.
func ForTest(t testing.TB) *Env {
	t.Helper()
	env, err := FromEnv()
	if err != nil {
		if req := os.Getenv(RequireVar); req == "1" || strings.EqualFold(req, "true") {
			t.Fatalf("%v (%s is set)", err, RequireVar)
		}
		t.Skip(err.Error())
	}
	return env
}

// Health checks that the PDS answers GET /xrpc/_health with 200.
func (e *Env) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Issuer+"/xrpc/_health", nil)
	if err != nil {
		return err
	}
	resp, err := e.HTTPClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /xrpc/_health: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Accounts returns the test accounts (those start.sh created, then those
// added with [Env.CreateAccount]).
func (e *Env) Accounts() []Account {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Account(nil), e.accounts...)
}

// Account finds a test account by name ("alice"), handle ("alice.test") or
// DID.
func (e *Env) Account(key string) (Account, error) {
	for _, a := range e.Accounts() {
		if a.Name == key || a.Handle.String() == strings.ToLower(key) || a.DID.String() == key {
			return a, nil
		}
	}
	return Account{}, fmt.Errorf("refpds: no test account %q (have %s)", key, e.accountNames())
}

func (e *Env) accountNames() string {
	var names []string
	for _, a := range e.Accounts() {
		names = append(names, a.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (e *Env) addAccount(a Account) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accounts = append(e.accounts, a)
}

// parseEnvFile reads KEY=VALUE lines; blank lines and lines starting with #
// are skipped, and one pair of surrounding quotes is removed from values.
func parseEnvFile(r io.Reader) (map[string]string, error) {
	vals := make(map[string]string)
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vals[strings.TrimSpace(k)] = v
	}
	return vals, sc.Err()
}

func fromValues(vals map[string]string) (*Env, error) {
	get := func(k string) string { return vals["GINOAUTH_REFPDS_"+k] }
	env := &Env{
		PDSURL:   strings.TrimRight(get("PDS_URL"), "/"),
		Hostname: get("HOSTNAME"),
		Issuer:   get("ISSUER"),
		PLCURL:   get("PLC_URL"),
	}
	if env.PDSURL == "" {
		return nil, fmt.Errorf("GINOAUTH_REFPDS_PDS_URL is not set")
	}
	u, err := url.Parse(env.PDSURL)
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.Path != "" {
		return nil, fmt.Errorf("GINOAUTH_REFPDS_PDS_URL=%q: want http://127.0.0.1:<port>", env.PDSURL)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("GINOAUTH_REFPDS_PDS_URL=%q: the PDS must listen on a loopback IP address", env.PDSURL)
	}
	if env.Hostname == "" {
		env.Hostname = "pds.test"
	}
	if _, err := syntax.ParseHandle(env.Hostname); err != nil {
		return nil, fmt.Errorf("GINOAUTH_REFPDS_HOSTNAME=%q is not a hostname", env.Hostname)
	}
	if env.Issuer == "" {
		env.Issuer = "https://" + env.Hostname
	}
	if env.Issuer != "https://"+env.Hostname {
		return nil, fmt.Errorf("GINOAUTH_REFPDS_ISSUER=%q: want https://%s", env.Issuer, env.Hostname)
	}
	if pid := get("PID"); pid != "" {
		if env.PID, err = strconv.Atoi(pid); err != nil {
			return nil, fmt.Errorf("GINOAUTH_REFPDS_PID=%q is not a number", pid)
		}
	}
	for _, name := range strings.FieldsFunc(get("ACCOUNTS"), func(r rune) bool { return r == ',' || r == ' ' }) {
		up := strings.ToUpper(name)
		a := Account{
			Name:     name,
			Password: get(up + "_PASSWORD"),
			Email:    get(up + "_EMAIL"),
		}
		if a.Handle, err = syntax.ParseHandle(get(up + "_HANDLE")); err != nil {
			return nil, fmt.Errorf("account %s: GINOAUTH_REFPDS_%s_HANDLE: %w", name, up, err)
		}
		if a.DID, err = syntax.ParseDID(get(up + "_DID")); err != nil {
			return nil, fmt.Errorf("account %s: GINOAUTH_REFPDS_%s_DID: %w", name, up, err)
		}
		if a.Password == "" {
			return nil, fmt.Errorf("account %s: GINOAUTH_REFPDS_%s_PASSWORD is not set", name, up)
		}
		env.accounts = append(env.accounts, a)
	}
	return env, nil
}
