package rediscluster_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// FailoverEnv turns TestFailover on (GINOAUTH_FAILOVER=1).
const FailoverEnv = "GINOAUTH_FAILOVER"

// FailoverAcksEnv=off runs the harness with the replicas' acknowledgements
// off (redisstore's UnreplicatedLeases and WritesUnacked), to measure what
// they prevent; nothing is then held to zero.
const FailoverAcksEnv = "GINOAUTH_FAILOVER_ACKS"

// Harness sizes: bounded load, a few hundred requests per second.
const (
	failoverSessions = 200
	failoverAccounts = 20
	failoverWorkers  = 12
	workerPause      = 5 * time.Millisecond
	storageTimeout   = 3 * time.Second // the library's default Config.StorageTimeout
)

// TestFailover runs three app instances on a six-node Redis Cluster of its
// own under bounded load (session checks, PDS calls, forced refreshes) on
// 199 sessions, and fails primaries over while the 200th session's refresh
// holds its lease, its token request held back at the authorization
// server:
//
//  1. CLUSTER FAILOVER FORCE on the replica of the lease's primary;
//  2. the lease's primary killed with SIGKILL (the replica takes over after
//     cluster-node-timeout);
//  3. the same with the replica frozen and its replication link cut when
//     the lease is taken, so that it cannot acknowledge it: Lock must answer 503
//     rather than hand out a lease a failover can lose (the replica
//     stalling as well as the primary dying is two faults, outside the
//     failure model: its sessions lost are reported, not held to zero);
//  4. the primary frozen with SIGSTOP for 5s (session checks must answer
//     within StorageTimeout, the replica takes over).
//
// After each, a second instance forces a refresh of the same session, and
// every session is refreshed from its stored tokens (one whose stored
// refresh token is spent is ended by the server: a session lost) and, if
// lost, logged in again. It prints, per phase, the answers by route and
// status, the slowest of each, the sessions lost, the 401 answers, the
// refresh grants, the refresh tokens presented twice and the replays the
// server detected, and fails, for the faults the model covers, on any of
// the last four that is not zero, and on a session check slower than
// StorageTimeout by more than a second and a half.
func TestFailover(t *testing.T) {
	if os.Getenv(FailoverEnv) == "" {
		t.Skip("failover harness off: set " + FailoverEnv + "=1 (it takes about a minute; .ci/run runs it as its own step)")
	}
	h := newHarness(t)
	h.loginAll()
	t.Logf("%d sessions of %d accounts on 3 instances; cluster %v", len(h.sessions), failoverAccounts, h.cluster.Addrs())

	h.phase("failover force", true, func(p *phase) { h.heldRefreshAcrossFailover(p, false) })
	h.phase("primary killed", true, func(p *phase) { h.heldRefreshAcrossFailover(p, true) })
	h.phase("primary killed, replica lagging", true, h.laggingReplica)
	h.phase("primary frozen 5s", true, h.frozenPrimary)
	h.finish()
}

type session struct {
	sid     string // the cookie
	did     syntax.DID
	oauthID string
}

type harness struct {
	t        *testing.T
	cluster  *testdb.RedisCluster
	cc       *redis.ClusterClient // the harness's own view, for keys and cleanup
	as       *ginoauthtest.Server
	gate     *apptest.Gate
	grants   *grantCounter
	apps     []*apptest.App
	prefix   string
	sessions []session
	http     *http.Client
	logs     *apptest.LogBuffer
	phases   []*phase
	acksOff  bool // FailoverAcksEnv=off
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, cluster: testdb.StartRedisCluster(t), prefix: "failover:", logs: &apptest.LogBuffer{}, acksOff: os.Getenv(FailoverAcksEnv) == "off"}
	h.cc = h.cluster.Client(func(o *redis.ClusterOptions) { o.ReadTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second })
	h.as = ginoauthtest.New(t, ginoauthtest.Options{})
	for i := range failoverAccounts {
		h.as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(fmt.Sprintf("user%02d.test", i))})
	}
	h.grants = &grantCounter{base: h.as.HTTPClient().Transport, presented: map[string]int{}, granted: map[string]int{}}
	h.gate = &apptest.Gate{Base: h.grants}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for range 3 {
		// Each instance has its own cluster client, built as the README
		// shows.
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: h.cluster.Addrs(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		opts := redisstore.Options{Prefix: h.prefix, Logger: logger}
		if h.acksOff {
			opts.UnreplicatedLeases, opts.Writes = true, redisstore.WritesUnacked
		}
		store, err := redisstore.New(rdb, opts)
		if err != nil {
			t.Fatal(err)
		}
		h.apps = append(h.apps, newApp(t, h.as, store, func(o *apptest.Options) {
			o.HTTPClient = &http.Client{Transport: h.gate}
			o.Logger = logger
			// Every login comes from 127.0.0.1: the harness measures
			// failovers, not the login limits.
			o.Configure = func(c *ginoauth.Config) { c.RateLimits.Disabled = true }
		}))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = failoverWorkers * 2
	h.http = &http.Client{Transport: tr, Timeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("warnings and errors the apps logged:\n%s", h.logs)
		}
	})
	return h
}

// loginAll logs in failoverSessions sessions, spread over the accounts and
// instances, a few at a time.
func (h *harness) loginAll() {
	h.sessions = make([]session, failoverSessions)
	all := make([]int, len(h.sessions))
	for i := range all {
		all[i] = i
	}
	h.login(all)
}

// login logs session i in afresh, for each i in which.
func (h *harness) login(which []int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, i := range which {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b := h.apps[i%3].NewBrowser()
			handle := fmt.Sprintf("user%02d.test", i%failoverAccounts)
			if r := b.Login(handle, ""); r.Status != http.StatusFound {
				h.t.Errorf("login %d: %d %s", i, r.Status, r.Body)
				return
			}
			me := b.Get("/api/whoami").JSON(h.t)
			acct, _ := h.as.Account(handle)
			h.sessions[i] = session{sid: b.Cookie("sid").Value, did: acct.DID, oauthID: me["oauthSessionID"].(string)}
		}()
	}
	wg.Wait()
	if h.t.Failed() {
		h.t.FailNow()
	}
}

// sweep expires every access token and makes one PDS call per session (so
// each refreshes from the tokens in storage: a session whose stored refresh
// token is spent is ended by the server), and returns the sessions lost.
func (h *harness) sweep() []int {
	h.as.ExpireAccessTokens()
	var mu sync.Mutex
	var lost []int
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, s := range h.sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st := 0
			for range 20 { // a 503 is storage still settling: ask again
				if st = h.do(h.apps[i%3], http.MethodGet, "/api/pds-session", s.sid); st != http.StatusServiceUnavailable {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if st != http.StatusOK {
				mu.Lock()
				lost = append(lost, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Ints(lost)
	return lost
}

// do sends one request with a session cookie and returns its status (0 if
// it got no answer).
func (h *harness) do(app *apptest.App, method, path, sid string) int {
	req, err := http.NewRequestWithContext(context.Background(), method, app.Server.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	resp, err := h.http.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// ---- the load ----

var loadRoutes = []struct {
	name, method, path string
	weight             int
}{
	{"session check", http.MethodGet, "/api/session", 70},
	{"PDS call", http.MethodGet, "/api/pds-session", 20},
	{"forced refresh", http.MethodPost, "/api/refresh", 10},
}

// phase is one fault under load: the answers of the load while it lasted.
type phase struct {
	name    string
	inModel bool // a fault the failure model covers
	strict  bool // inModel with the acknowledgements on: nothing may be lost
	lost    []int
	// replays, grants and twice are the server's counts over the phase.
	replays, grants, twice int

	mu      sync.Mutex
	answers map[string]map[int]int // route -> status -> count
	slowest map[string]time.Duration
	notes   []string
}

func (p *phase) record(route string, status int, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answers[route] == nil {
		p.answers[route] = map[int]int{}
	}
	p.answers[route][status]++
	if took > p.slowest[route] {
		p.slowest[route] = took
	}
}

func (p *phase) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// phase runs fault under the load, waits for the cluster to be whole again,
// records what the load saw, then sweeps every session and logs the lost
// ones in again, so that each phase starts with every session alive.
func (h *harness) phase(name string, inModel bool, fault func(*phase)) {
	h.t.Helper()
	p := &phase{name: name, inModel: inModel, strict: inModel && !h.acksOff, answers: map[string]map[int]int{}, slowest: map[string]time.Duration{}}
	before := h.as.Stats()
	_, twiceBefore, _ := h.grants.summary()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range failoverWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))) //nolint:gosec // a load schedule
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Session 0 is the held refresh's: the load leaves it alone.
				s := h.sessions[1+rng.IntN(len(h.sessions)-1)]
				route := loadRoutes[0]
				for n, r := rng.IntN(100), 0; ; r++ {
					if n < loadRoutes[r].weight {
						route = loadRoutes[r]
						break
					}
					n -= loadRoutes[r].weight
				}
				began := time.Now()
				st := h.do(h.apps[rng.IntN(len(h.apps))], route.method, route.path, s.sid)
				p.record(route.name, st, time.Since(began))
				time.Sleep(workerPause)
			}
		}()
	}
	time.Sleep(time.Second) // the load before the fault
	began := time.Now()
	fault(p)
	if err := h.cluster.WaitHealthy(time.Minute); err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	p.note("cluster whole again %v after the fault began", time.Since(began).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second) // the load after it
	close(stop)
	wg.Wait()
	p.lost = h.sweep()
	after := h.as.Stats()
	_, twiceAfter, _ := h.grants.summary()
	p.replays, p.grants, p.twice = after.ReplaysDetected-before.ReplaysDetected, after.RefreshGrants-before.RefreshGrants, twiceAfter-twiceBefore
	h.summarize(p)
	h.phases = append(h.phases, p)
	if len(p.lost) > 0 {
		h.login(p.lost)
	}
}

func (h *harness) summarize(p *phase) {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %q:\n", p.name)
	for _, r := range loadRoutes {
		var parts []string
		var statuses []int
		for st := range p.answers[r.name] {
			statuses = append(statuses, st)
		}
		sort.Ints(statuses)
		for _, st := range statuses {
			parts = append(parts, fmt.Sprintf("%d: %d", st, p.answers[r.name][st]))
		}
		fmt.Fprintf(&b, "  %-15s %s (slowest %v)\n", r.name, strings.Join(parts, ", "), p.slowest[r.name].Round(time.Millisecond))
	}
	for _, n := range p.notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	unauthorized := 0
	for _, r := range loadRoutes {
		unauthorized += p.answers[r.name][http.StatusUnauthorized]
	}
	fmt.Fprintf(&b, "  sessions lost: %d of %d; 401 answers: %d; refresh grants: %d; refresh tokens presented twice: %d; replays: %d",
		len(p.lost), len(h.sessions), unauthorized, p.grants, p.twice, p.replays)
	switch {
	case h.acksOff:
		b.WriteString(" (acknowledgements off: reported, not held to zero)")
	case !p.inModel:
		b.WriteString(" (a fault outside the failure model: reported, not held to zero)")
	}
	h.t.Log(b.String())
	if p.strict && (len(p.lost) > 0 || unauthorized > 0 || p.twice > 0 || p.replays > 0) {
		h.t.Errorf("%s: logins lost: sessions %v, %d answers 401 (503 is the answer to an outage), %d tokens presented twice, %d replays",
			p.name, p.lost, unauthorized, p.twice, p.replays)
	}
	if d := p.slowest["session check"]; d > storageTimeout+1500*time.Millisecond {
		h.t.Errorf("%s: a session check took %v; StorageTimeout is %v", p.name, d.Round(time.Millisecond), storageTimeout)
	}
}

// ---- the held refresh ----

// leaseKey is the Redis key of the refresh lock of s: indigoclient's lock
// name (checked against Redis in heldRefresh) under redisstore's "lock:".
func (h *harness) leaseKey(s session) string {
	sum := sha256.Sum256([]byte(s.did.String() + " " + s.oauthID))
	return h.prefix + "lock:oauth-refresh:" + hex.EncodeToString(sum[:16])
}

func (h *harness) refreshToken(s session) string {
	data, err := h.apps[0].Client.Store().GetSession(context.Background(), s.did, s.oauthID)
	if err != nil {
		h.t.Fatalf("the stored session: %v", err)
	}
	return data.RefreshToken
}

// heldRefresh starts a forced refresh of s on instance 0 and returns once
// its token request is held at the gate (held: it holds the lease), or
// once it answered without getting there. answer delivers its status.
func (h *harness) heldRefresh(s session) (token string, held bool, answer <-chan int, release func()) {
	token = h.refreshToken(s)
	arrived, release := h.gate.Hold(func(r *http.Request) bool { return refreshTokenOf(r) == token }, false)
	ch := make(chan int, 1)
	go func() { ch <- h.do(h.apps[0], http.MethodPost, "/api/refresh", s.sid) }()
	select {
	case <-arrived:
		return token, true, ch, release
	case st := <-ch:
		release() // disarm
		ch <- st
		return token, false, ch, release
	}
}

// secondRefresh forces a refresh of s on instance 1, again after each 503
// (its cluster client is still learning who serves what), for up to 10s.
func (h *harness) secondRefresh(s session) <-chan int {
	ch := make(chan int, 1)
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := h.do(h.apps[1], http.MethodPost, "/api/refresh", s.sid)
			if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
				ch <- st
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return ch
}

// waitPrimary waits until node serves key's slot as a primary.
func (h *harness) waitPrimary(key string, node *testdb.RedisServer, within time.Duration) time.Duration {
	h.t.Helper()
	began := time.Now()
	for {
		if p, _, err := h.cluster.Shard(key); err == nil && p == node && h.cluster.Serving() {
			return time.Since(began)
		}
		if time.Since(began) > within {
			h.t.Fatalf("%s did not take over %q within %v", node.Addr, key, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldRefreshAcrossFailover: instance 0 holds session 0's refresh lease
// (acknowledged by the replica), the lease's primary fails over (FORCE, or
// SIGKILL), then instance 1 forces a refresh of the same session. The
// token is presented once. After a fast failover the lease survives
// (instance 1 waits for it); a failover that outlasts the renewed lease's
// margin makes the holder stop before presenting its token, and instance
// 1 makes the one refresh.
func (h *harness) heldRefreshAcrossFailover(p *phase, kill bool) {
	s := h.sessions[0]
	token, held, first, release := h.heldRefresh(s)
	if !held {
		h.t.Fatalf("%s: the refresh did not get its lease on a healthy cluster: %d", p.name, <-first)
	}
	key := h.leaseKey(s)
	if n, err := h.cc.Exists(context.Background(), key).Result(); err != nil || n != 1 {
		h.t.Fatalf("%s: the held refresh's lease is not at %s (%d, %v): did indigoclient's lock name change?", p.name, key, n, err)
	}
	primary, replica, err := h.cluster.Shard(key)
	if err != nil || replica == nil {
		h.t.Fatalf("%s: the lease's shard: %v, replica %v", p.name, err, replica)
	}
	h.as.ExpireAccessTokens() // a wave of refreshes through the outage
	began := time.Now()
	if kill {
		primary.Kill()
	} else if _, err := h.cluster.NodeDo(replica.Addr, "cluster", "failover", "force"); err != nil {
		h.t.Fatalf("CLUSTER FAILOVER FORCE: %v", err)
	}
	took := h.waitPrimary(key, replica, 30*time.Second)
	p.note("replica %s took over the lease's slot %v after the fault", replica.Addr, took.Round(100*time.Millisecond))
	second := h.secondRefresh(s)
	var secondStatus int
	select {
	case secondStatus = <-second:
		p.note("LEASE LOST or given up: instance 1 refreshed (%d) before instance 0's held refresh was let go", secondStatus)
	case <-time.After(2 * time.Second):
		p.note("lease kept: instance 1 waited for it")
	}
	release()
	firstStatus := <-first
	if secondStatus == 0 {
		secondStatus = <-second
	}
	p.note("held refresh on instance 0: %d; second refresh on instance 1: %d; held %v in all",
		firstStatus, secondStatus, time.Since(began).Round(100*time.Millisecond))
	n := h.grants.presentedCount(token)
	p.note("the held refresh's token was presented %d times", n)
	// The refresh lock is a 6 s lease renewed every 2 s: a failover slower
	// than that can leave it unrenewed past the holder's margin, and the
	// holder must then stop before its token request (held back, so not
	// sent) and leave the one refresh to instance 1. A fast failover must
	// keep the lease.
	stopped := took >= 2*time.Second && firstStatus != http.StatusOK && secondStatus == http.StatusOK && n == 1
	if stopped {
		p.note("the failover outlasted the renewed lease: the held refresh stopped before presenting its token, instance 1 made the one refresh")
	}
	if !h.acksOff && !stopped && (firstStatus != http.StatusOK || secondStatus != http.StatusOK || n != 1) {
		h.t.Errorf("%s: the held refresh answered %d and the second %d, and its token was presented %d times; want 200, 200, once",
			p.name, firstStatus, secondStatus, n)
	}
	if kill {
		primary.Restart() // it rejoins as the new primary's replica
	}
}

// laggingReplica: the lease's replica is frozen and its replication link
// cut (CLIENT KILL TYPE replica on the primary; frozen, it cannot
// reconnect), so whatever the primary writes from then on never reaches it,
// though the cluster still lists it as the primary's replica. Lock must wait
// AckTimeout, give the lease back and answer 503. The primary is then
// killed and the replica promoted (the lease, had it been handed out, would
// be gone), and instance 1's refresh of the same session makes the one
// grant. Held to zero lost sessions since the OAuth client stores a save it
// reads back again (a write that failed unacknowledged is readable on the
// primary until it dies).
func (h *harness) laggingReplica(p *phase) {
	s := h.sessions[0]
	key := h.leaseKey(s)
	primary, replica, err := h.cluster.Shard(key)
	if err != nil || replica == nil {
		h.t.Fatalf("%s: the lease's shard: %v, replica %v", p.name, err, replica)
	}
	h.refreshToken(s) // warm: the lease must follow the freeze at once
	replica.Stop()
	stopped := time.Now()
	if _, err := h.cluster.NodeDo(primary.Addr, "client", "kill", "type", "replica"); err != nil {
		h.t.Fatalf("CLIENT KILL TYPE replica: %v", err)
	}
	leaseTried := time.Now()
	if d := leaseTried.Sub(stopped); d > testdb.RedisClusterNodeTimeout*3/4 {
		// The cluster marks a replica failed after cluster-node-timeout,
		// and a failed replica is not waited for (see redisstore's doc):
		// the phase would test the two-fault case the model leaves out.
		h.t.Fatalf("%s: the machine is too slow for this phase: the lease was tried %v after the replica froze", p.name, d)
	}
	token, held, first, release := h.heldRefresh(s)
	firstStatus := 0
	if !held {
		firstStatus = <-first
	}
	primary.Kill()
	replica.Cont()
	if _, err := h.cluster.NodeDo(replica.Addr, "cluster", "failover", "force"); err != nil {
		h.t.Fatalf("CLUSTER FAILOVER FORCE: %v", err)
	}
	took := h.waitPrimary(key, replica, 30*time.Second)
	p.note("replica %s took over the lease's slot %v after the kill", replica.Addr, took.Round(100*time.Millisecond))
	secondStatus := <-h.secondRefresh(s)
	release()
	if held {
		firstStatus = <-first
	}
	p.note("refresh taken with the replica unable to acknowledge: lease held %v, answered %d; second refresh on instance 1 after the failover: %d",
		held, firstStatus, secondStatus)
	n := h.grants.presentedCount(token)
	p.note("its token was presented %d times", n)
	if !h.acksOff && (held || firstStatus != http.StatusServiceUnavailable || secondStatus != http.StatusOK || n != 1) {
		h.t.Errorf("%s: the refresh took a lease no replica acknowledged (held %v, %d), the second answered %d, the token was presented %d times; want 503, 200, once",
			p.name, held, firstStatus, secondStatus, n)
	}
	p.note("the lease was tried %v after the replica froze", leaseTried.Sub(stopped).Round(10*time.Millisecond))
	primary.Restart() // it rejoins as the new primary's replica
}

// frozenPrimary: a primary stops answering for 5s (SIGSTOP), longer than
// cluster-node-timeout, with every access token expired: its slots answer
// 503 within StorageTimeout, and its replica takes over.
func (h *harness) frozenPrimary(p *phase) {
	primary, replica, err := h.cluster.Shard(h.leaseKey(h.sessions[0]))
	if err != nil || replica == nil {
		h.t.Fatalf("%s: a shard: %v", p.name, err)
	}
	h.as.ExpireAccessTokens()
	primary.Stop()
	time.Sleep(5 * time.Second)
	primary.Cont()
	p.note("primary %s frozen for 5s; replica %s now serves", primary.Addr, replica.Addr)
}

// finish prints the totals over the phases.
func (h *harness) finish() {
	st := h.as.Stats()
	grants, twice, most := h.grants.summary()
	var lost, lostInModel int
	for _, p := range h.phases {
		lost += len(p.lost)
		if p.inModel {
			lostInModel += len(p.lost)
		}
	}
	h.t.Logf("totals over %d phases: %d sessions lost (%d in faults the model covers); %d refresh grants, %d refresh tokens presented more than once (most presentations of one token: %d), %d replays; %d sessions active at the server (%d expected)",
		len(h.phases), lost, lostInModel, grants, twice, most, st.ReplaysDetected, st.ActiveSessions, len(h.sessions))
	if st.ActiveSessions != len(h.sessions) {
		h.t.Errorf("%d sessions active at the server, want %d", st.ActiveSessions, len(h.sessions))
	}
}

// ---- refresh grants per token ----

// grantCounter is the authorization server's transport as the apps see
// it: it counts the refresh_token grant requests per refresh token, leaving
// out use_dpop_nonce challenges (which the client answers by sending the
// same token again, as the protocol wants).
type grantCounter struct {
	base http.RoundTripper

	mu        sync.Mutex
	presented map[string]int // refresh token -> requests the server judged
	granted   map[string]int // refresh token -> grants
}

func (g *grantCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	token := refreshTokenOf(req)
	resp, err := g.base.RoundTrip(req)
	if token == "" || err != nil {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil || (resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("use_dpop_nonce"))) {
		return resp, rerr
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.presented[token]++
	if resp.StatusCode == http.StatusOK {
		g.granted[token]++
	}
	return resp, nil
}

func (g *grantCounter) presentedCount(token string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.presented[token]
}

// summary: the grants, the tokens presented more than once, and the most
// presentations of one token.
func (g *grantCounter) summary() (grants, twice, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.granted {
		grants += n
	}
	for _, n := range g.presented {
		if n > 1 {
			twice++
		}
		most = max(most, n)
	}
	return grants, twice, most
}

// refreshTokenOf returns the refresh token of a refresh_token grant
// request, or "".
func refreshTokenOf(req *http.Request) string {
	if req.URL.Path != "/oauth/token" || req.GetBody == nil {
		return ""
	}
	body, err := req.GetBody()
	if err != nil {
		return ""
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return ""
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil || form.Get("grant_type") != "refresh_token" {
		return ""
	}
	return form.Get("refresh_token")
}
