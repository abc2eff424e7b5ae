package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

// harness holds what every row shares: the authorization server, the
// services, the load generator and the run's names.
type harness struct {
	o        options
	self     string // this executable, for the serve and loadgen subcommands
	tmp      string // SQLite files, wrk script
	prefix   string // bh_<12 hex>: tables and Redis keys of this run
	secret   string
	as       *ginoauthtest.Server
	load     loadTool
	goload   *goTool
	pg       *gorm.DB // nil: Postgres unavailable
	pgWhy    string
	rdb      *redis.Client // nil: Redis unavailable
	redisWhy string
	node     string // node binary, "" if unavailable
	nodeJS   string // server.mjs
	nodeWhy  string
	info     machineInfo

	mu    sync.Mutex
	procs map[*server]bool
}

func newHarness(ctx context.Context, o options) (*harness, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "benchharness-")
	if err != nil {
		return nil, err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	h := &harness{o: o, self: self, tmp: tmp, prefix: "bh_" + hex.EncodeToString(b[:]), secret: randomID(),
		goload: &goTool{self: self}, procs: map[*server]bool{}}

	switch o.loadgen {
	case "auto", "wrk":
		w, err := newWrk(tmp)
		if err == nil {
			h.load = w
		} else if o.loadgen == "wrk" {
			return nil, fmt.Errorf("wrk: %v (apt-get install -y wrk)", err)
		} else {
			log.Printf("wrk not found (%v): using the Go load generator", err)
			h.load = h.goload
		}
	case "go":
		h.load = h.goload
	default:
		return nil, fmt.Errorf("-loadgen %q: want auto, wrk or go", o.loadgen)
	}

	// Postgres and Redis: used when they answer.
	if db, err := gorm.Open(postgres.Open(o.pgDSN), &gorm.Config{Logger: logger.Discard}); err != nil {
		h.pgWhy = fmt.Sprintf("Postgres at %s unavailable: %v", redactDSN(o.pgDSN), err)
	} else {
		h.pg = db
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr, ContextTimeoutEnabled: true})
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := rdb.Ping(pctx).Err(); err != nil {
		h.redisWhy = fmt.Sprintf("Redis at %s unavailable: %v", o.redisAddr, err)
		_ = rdb.Close()
	} else {
		h.rdb = rdb
	}
	cancel()
	for _, why := range []string{h.pgWhy, h.redisWhy} {
		if why != "" {
			log.Print(why + ": its rows are skipped")
		}
	}

	// The local authorization server + PDS, with the accounts the server
	// processes' directory derives.
	h.as = ginoauthtest.NewServer(ginoauthtest.Options{})
	for i := range max(1, o.accounts) {
		h.as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(accountHandle(i)), DID: accountDID(i)})
	}
	h.info = gatherMachineInfo(ctx, h)
	return h, nil
}

// installNode runs deno-anchor/install.sh (quick when it is up to date).
func (h *harness) installNode(ctx context.Context) {
	dir := h.o.nodeAnchor
	if dir == "" {
		dir = findAnchorDir()
	}
	if dir == "" {
		h.nodeWhy = "internal/benchharness/deno-anchor not found from the working directory (run from the repository, or pass -node-anchor)"
		return
	}
	log.Printf("installing the Node anchor (%s/install.sh) ...", dir)
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "install.sh")) //nolint:gosec // the repository's own install script
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.nodeWhy = fmt.Sprintf("deno-anchor/install.sh failed (%v): %s", err, lastLines(stderr.String(), 8))
		return
	}
	for _, f := range strings.Fields(lastLines(string(out), 1)) {
		if v, ok := strings.CutPrefix(f, "NODE="); ok {
			h.node = v
		}
		if v, ok := strings.CutPrefix(f, "SERVER="); ok {
			h.nodeJS = v
		}
	}
	if h.node == "" || h.nodeJS == "" {
		h.nodeWhy = "deno-anchor/install.sh did not print NODE= and SERVER=: " + string(out)
		h.node, h.nodeJS = "", ""
	}
}

func findAnchorDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "internal", "benchharness", "deno-anchor")
		if _, err := os.Stat(filepath.Join(p, "install.sh")); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// skipReason says why a row cannot run here, or "".
func (h *harness) skipReason(r rowSpec) string {
	switch {
	case r.needsPostgres() && h.pg == nil:
		return h.pgWhy
	case r.needsRedis() && h.rdb == nil:
		return h.redisWhy
	case r.needsNode() && h.node == "":
		return h.nodeWhy
	}
	return ""
}

// cleanup stops every server still running and removes the run's tables,
// keys and files.
func (h *harness) cleanup() {
	h.mu.Lock()
	procs := make([]*server, 0, len(h.procs))
	for p := range h.procs {
		procs = append(procs, p)
	}
	h.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if h.pg != nil {
		var tables []string
		err := h.pg.WithContext(ctx).Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE ?`, h.prefix+`\_%`).Scan(&tables).Error
		if err != nil {
			log.Printf("cleanup: list the Postgres tables of %s: %v", h.prefix, err)
		}
		for _, t := range tables {
			if err := h.pg.WithContext(ctx).Exec(`DROP TABLE IF EXISTS "` + t + `"`).Error; err != nil {
				log.Printf("cleanup: drop %s: %v", t, err)
			}
		}
		if len(tables) > 0 {
			log.Printf("cleanup: dropped %d Postgres tables (%s_*)", len(tables), h.prefix)
		}
		if sqlDB, err := h.pg.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}
	if h.rdb != nil {
		n, err := deleteRedisKeys(ctx, h.rdb, h.prefix+":")
		if err != nil {
			log.Printf("cleanup: Redis keys under %s: %v", h.prefix+":", err)
		} else if n > 0 {
			log.Printf("cleanup: deleted %d Redis keys (%s:*)", n, h.prefix)
		}
		_ = h.rdb.Close()
	}
	if h.as != nil {
		h.as.Close()
	}
	_ = os.RemoveAll(h.tmp)
}

func deleteRedisKeys(ctx context.Context, rdb *redis.Client, prefix string) (int, error) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	total := 0
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		total += len(keys)
		err := rdb.Unlink(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return total, err
	}
	return total, flush()
}

// server is a running server process.
type server struct {
	cmd    *exec.Cmd
	appURL string
	ctlURL string
	stderr *lockedBuffer
	exited chan struct{}
	h      *harness
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serverOpts adjust a server process.
type serverOpts struct {
	table    string // ginoauth SQL stores: kv table
	sqlite   string // SQLite file
	accounts int
}

// startServer starts the server process of row and waits until it listens.
func (h *harness) startServer(ctx context.Context, r rowSpec, so serverOpts) (*server, error) {
	var cmd *exec.Cmd
	if r.Kind == kindNode {
		cmd = exec.CommandContext(ctx, h.node, h.nodeJS) //nolint:gosec // the Node that install.sh installed, with its server.mjs
		cmd.Dir = filepath.Dir(h.nodeJS)
		cmd.Env = append(os.Environ(), "PORT=0", "BENCH_COOKIE_SECRET="+h.secret)
	} else {
		sqlitePath := so.sqlite
		if sqlitePath == "" {
			name := "ginoauth.db"
			if r.Kind == kindGSess {
				name = "gsessions.db"
			}
			sqlitePath = filepath.Join(h.tmp, name)
		}
		accounts := so.accounts
		if accounts <= 0 {
			accounts = max(1, h.o.accounts)
		}
		args := []string{"serve", "-row", r.Name, "-as-url", h.as.URL(), "-accounts", strconv.Itoa(accounts),
			"-secret", h.secret, "-sqlite", sqlitePath, "-pg-dsn", h.o.pgDSN, "-redis-addr", h.o.redisAddr, "-prefix", h.prefix}
		if so.table != "" {
			args = append(args, "-table", so.table)
		}
		cmd = exec.CommandContext(ctx, h.self, args...) //nolint:gosec // this program's own serve subcommand
	}
	// Interrupted: ask the server to stop as stop does, then kill it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{}), h: h}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.procs[s] = true
	h.mu.Unlock()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "READY ") {
				select {
				case ready <- line:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	select {
	case line := <-ready:
		f := strings.Fields(line)
		s.appURL = f[1]
		if len(f) > 2 {
			s.ctlURL = f[2]
		}
		return s, nil
	case <-s.exited:
		s.stop()
		return nil, fmt.Errorf("%s: server exited before listening: %s", r.Name, lastLines(s.stderr.String(), 10))
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s: server not listening after 60s: %s", r.Name, lastLines(s.stderr.String(), 10))
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop ends the server process (SIGTERM, then SIGKILL after 10 s).
func (s *server) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.h.mu.Lock()
	delete(s.h.procs, s)
	s.h.mu.Unlock()
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// rssKB reads the server process's resident set size.
func (s *server) rssKB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid()))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// control calls the server's control API and decodes its JSON answer.
func (s *server) control(ctx context.Context, method, path string, header http.Header, out any) error {
	if s.ctlURL == "" {
		return errors.New("this server has no control API")
	}
	req, err := http.NewRequestWithContext(ctx, method, s.ctlURL+path, nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// noRedirect is a client for the logins: every hop is checked by hand.
var noRedirect = &http.Client{
	Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64},
	Timeout:       60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// login logs a client in on row's server and returns its credential as a
// header line ("Cookie: sid=...", or "Authorization: Bearer ..." for a
// native app), "" for bare Gin. A row whose client resends an older cookie
// then moves the server's clock past the reseal interval.
func (h *harness) login(ctx context.Context, r rowSpec, s *server) (string, error) {
	switch r.Kind {
	case kindBare:
		return "", nil
	case kindGSess, kindNode:
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.appURL+"/bench/login", nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
			return "", fmt.Errorf("/bench/login: %d, %d cookies", resp.StatusCode, len(resp.Cookies()))
		}
		c := resp.Cookies()[0]
		return "Cookie: " + c.Name + "=" + c.Value, nil
	case kindGinoauth:
		if r.Bearer {
			token, err := h.loginNative(ctx, s.appURL, accountHandle(0))
			if err != nil {
				return "", err
			}
			return "Authorization: Bearer " + token, nil
		}
		// Several accounts: the others first, then account 0 added last,
		// so that it is the active one the check answers.
		handles := []string{}
		for i := r.Accounts - 1; i >= 1; i-- {
			handles = append(handles, accountHandle(i))
		}
		c, err := h.loginGinoauth(ctx, s.appURL, append(handles, accountHandle(0))...)
		if err != nil {
			return "", err
		}
		if r.OldCookie {
			var moved struct{ By string }
			if err := s.control(ctx, http.MethodPost, "/advance?by="+oldCookieAge.String(), nil, &moved); err != nil {
				return "", err
			}
		}
		return "Cookie: " + c.Name + "=" + c.Value, nil
	}
	return "", fmt.Errorf("unknown kind %q", r.Kind)
}

// oldCookieAge is how far an old-cookie row's server clock moves after the
// login: past the reseal interval of IdleTimeout 30m (a minute), well
// within the timeout.
const oldCookieAge = 2 * time.Minute

// nativeRedirect is the native app's registered redirect URI in the
// harness's app.
const nativeRedirect = "com.example.bench:/oauth/callback"

// loginNative runs a native app's login against the app at appURL: POST
// mobile-start with the app's PKCE challenge, the user's approval in the
// system browser (Server.Consent, then the app's callback, which redirects
// to the app with a one-time code), and POST mobile-token with the
// verifier. It returns the session token.
func (h *harness) loginNative(ctx context.Context, appURL, handle string) (string, error) {
	verifier := randomID()
	sum := sha256.Sum256([]byte(verifier))
	state := randomID()[:16]
	post := func(path string, in map[string]string, out any) error {
		raw, _ := json.Marshal(in)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, appURL+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		resp, err := noRedirect.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
		return json.Unmarshal(body, out)
	}
	var start struct {
		AuthURL string `json:"authUrl"`
	}
	if err := post("/api/auth/mobile-start", map[string]string{"handle": handle, "code_challenge": base64.RawURLEncoding.EncodeToString(sum[:]),
		"code_challenge_method": "S256", "redirect_uri": nativeRedirect, "state": state}, &start); err != nil {
		return "", err
	}
	cb, err := h.as.Consent(ctx, start.AuthURL, handle, true)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cb, nil)
	resp, err := noRedirect.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), nativeRedirect+"?") || loc.Query().Get("state") != state {
		return "", fmt.Errorf("callback: want a redirect to the app, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var tok struct {
		SessionToken string `json:"session_token"`
	}
	if err := post("/api/auth/mobile-token", map[string]string{"code": loc.Query().Get("code"), "code_verifier": verifier, "redirect_uri": nativeRedirect}, &tok); err != nil {
		return "", err
	}
	if tok.SessionToken == "" {
		return "", errors.New("mobile-token: no session token")
	}
	return tok.SessionToken, nil
}

// loginGinoauth runs one real login against the app at appURL, as a
// browser with an empty cookie jar: GET /login?handle= (the app sends the
// pushed authorization request), the user's approval at the authorization
// server (Server.Consent), GET of the callback (the app exchanges the code
// and starts a session). With more handles, each further one is added to
// the same browser (GET /login?add=1&handle=), the last one active. It
// returns the session cookie.
func (h *harness) loginGinoauth(ctx context.Context, appURL string, handles ...string) (*http.Cookie, error) {
	jar, _ := cookiejar.New(nil)
	// hop is one answer of the app, its body read and closed.
	type hop struct {
		status   int
		location string
		cookies  []*http.Cookie
	}
	get := func(u string) (hop, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return hop{}, err
		}
		for _, c := range jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			return hop{}, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		jar.SetCookies(req.URL, resp.Cookies())
		return hop{resp.StatusCode, resp.Header.Get("Location"), resp.Cookies()}, nil
	}
	redirected := func(status int) bool { return status == http.StatusFound || status == http.StatusSeeOther }
	var cookie *http.Cookie
	for i, handle := range handles {
		q := url.Values{"handle": {handle}}
		if i > 0 {
			q.Set("add", "1")
		}
		start, err := get(appURL + "/login?" + q.Encode())
		if err != nil {
			return nil, err
		}
		if !redirected(start.status) {
			return nil, fmt.Errorf("/login: want a redirect to the authorization server, got %d", start.status)
		}
		cb, err := h.as.Consent(ctx, start.location, handle, true)
		if err != nil {
			return nil, err
		}
		done, err := get(cb)
		if err != nil {
			return nil, err
		}
		if !redirected(done.status) {
			return nil, fmt.Errorf("callback: want a redirect, got %d", done.status)
		}
		cookie = nil
		for _, c := range done.cookies {
			if c.Name == "sid" && c.Value != "" && c.MaxAge >= 0 {
				cookie = c
			}
		}
		if cookie == nil {
			return nil, errors.New("callback set no session cookie")
		}
	}
	if cookie == nil {
		return nil, errors.New("no handle to log in")
	}
	return cookie, nil
}

// check sends one request with the credential header ("Name: value") and
// wants 200 and the DID.
func check(ctx context.Context, target, header string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if name, value, ok := strings.Cut(header, ":"); ok {
		req.Header.Set(name, strings.TrimSpace(value))
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var got didAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.DID != benchDID {
		return fmt.Errorf("GET %s: %d %q, want 200 {\"did\": %q}", target, resp.StatusCode, body, benchDID)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}
