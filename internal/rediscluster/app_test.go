package rediscluster_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/redisstore"
)

// newApp starts one app instance on store against the authorization
// server as (whose account alice.test the tests log in).
func newApp(t testing.TB, as *ginoauthtest.Server, store storage.Store, modify ...func(*apptest.Options)) *apptest.App {
	t.Helper()
	opts := apptest.Options{Storage: store, HTTPClient: as.HTTPClient(), Directory: as.Directory(), Consent: as.Consent}
	for _, m := range modify {
		m(&opts)
	}
	return apptest.New(t, opts)
}

// status sends one request with the session cookie sid.
func status(a *apptest.App, method, path, sid string) int {
	return a.WithCookie(method, path, sid).Status
}

// TestAppOnCluster: three instances, each with a cluster client of its own,
// share their sessions on the Redis Cluster: a login on any instance is
// checked on every instance, concurrent PDS calls with expired tokens on
// all three make exactly one refresh grant per session, every instance
// lists the account's sessions, and logging out everywhere ends them all
// on every instance.
func TestAppOnCluster(t *testing.T) {
	prefix := testdb.RedisClusterPrefix(t)
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	apps := make([]*apptest.App, 3)
	for i := range apps {
		apps[i] = newApp(t, as, testdb.RedisClusterOn(t, prefix))
	}

	browsers := make([]*ginoauthtest.Browser, len(apps))
	sids := make([]string, len(apps))
	for i, a := range apps {
		browsers[i] = a.NewBrowser()
		if r := browsers[i].Login("alice.test", ""); r.Status != http.StatusFound {
			t.Fatalf("login on instance %d: %d %s", i, r.Status, r.Body)
		}
		sids[i] = browsers[i].Cookie("sid").Value
	}
	for i, sid := range sids {
		for j, a := range apps {
			if st := status(a, http.MethodGet, "/api/session", sid); st != http.StatusOK {
				t.Fatalf("session %d checked on instance %d: %d", i, j, st)
			}
		}
	}

	as.ExpireAccessTokens()
	before := as.Stats()
	const calls = 30
	got := make([]int, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = status(apps[(i/len(sids))%len(apps)], http.MethodGet, "/api/pds-session", sids[i%len(sids)])
		}()
	}
	wg.Wait()
	for i, st := range got {
		if st != http.StatusOK {
			t.Errorf("PDS call %d with expired tokens: %d", i, st)
		}
	}
	after := as.Stats()
	if grants := after.RefreshGrants - before.RefreshGrants; grants != len(sids) || after.ReplaysDetected != 0 {
		t.Fatalf("%d concurrent PDS calls on %d sessions from %d instances: %d refresh grants, %d replays; want one grant per session",
			calls, len(sids), len(apps), grants, after.ReplaysDetected)
	}

	for j, a := range apps {
		r := a.WithCookie(http.MethodGet, "/api/sessions", sids[0])
		if n := len(r.JSON(t)["sessions"].([]any)); r.Status != http.StatusOK || n != len(sids) {
			t.Fatalf("the device list on instance %d: %d, %d sessions, want %d", j, r.Status, n, len(sids))
		}
	}

	if r := browsers[1].PostForm("/api/sessions/end-all", nil); r.Status != http.StatusOK || r.JSON(t)["ended"] != float64(len(sids)) {
		t.Fatalf("logout everywhere: %d %s", r.Status, r.Body)
	}
	for i, sid := range sids {
		for j, a := range apps {
			if st := status(a, http.MethodGet, "/api/session", sid); st != http.StatusUnauthorized {
				t.Fatalf("session %d on instance %d after logout everywhere: %d", i, j, st)
			}
		}
	}
	if st := as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("logout everywhere left %d sessions active at the server", st.ActiveSessions)
	}
}

// TestStorageDeadline: with a Redis client built without
// ContextTimeoutEnabled (as the README showed), a 5-second stall of Redis
// (DEBUG SLEEP on a server of the test's own) is answered 503 at
// Config.StorageTimeout (the default, 3s) by a session check and by a PDS
// call, not after the stall. Before the fix they took 5s.
func TestStorageDeadline(t *testing.T) {
	const stall, storageTimeout, slack = 5 * time.Second, 3 * time.Second, 1500 * time.Millisecond
	srv := testdb.StartRedisServer(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := redisstore.New(rdb, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	a := newApp(t, as, store)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value

	resumed := srv.Sleep(stall)
	began := time.Now()
	paths := []string{"/api/session", "/api/pds-session"}
	type answer struct {
		status int
		took   time.Duration
	}
	answers := make([]answer, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			answers[i] = answer{status(a, http.MethodGet, path, sid), time.Since(start)}
		}()
	}
	wg.Wait()
	if time.Since(began) >= stall {
		t.Error("the requests outlasted the stall")
	}
	for i, ans := range answers {
		t.Logf("%s during a %v stall: %d after %v", paths[i], stall, ans.status, ans.took.Round(time.Millisecond))
		if ans.status != http.StatusServiceUnavailable || ans.took > storageTimeout+slack {
			t.Errorf("%s during a %v stall: %d after %v, want 503 within %v of StorageTimeout (%v)",
				paths[i], stall, ans.status, ans.took.Round(time.Millisecond), slack, storageTimeout)
		}
	}
	<-resumed
	if st := status(a, http.MethodGet, "/api/session", sid); st != http.StatusOK {
		t.Fatalf("after the stall: %d", st)
	}
}
