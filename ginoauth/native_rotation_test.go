package ginoauth_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// rotationCluster starts instances of one app with the native-app flow on,
// one per store handle, sharing one authorization server and one client_id.
func rotationCluster(t *testing.T, stores []storage.Store, configure ...func(*ginoauth.Config)) []*testApp {
	t.Helper()
	conf := func(c *ginoauth.Config) {
		c.Mobile.RedirectURIs = []string{appRedirect}
		for _, f := range configure {
			f(c)
		}
	}
	first := newTestApp(t, stores[0], conf)
	apps := []*testApp{first}
	for _, s := range stores[1:] {
		apps = append(apps, startApp(t, first.as, func(o *apptest.Options) {
			o.Storage = s
			o.ClientConfig = first.OAuthConfig // one app, one client_id
			o.Configure = conf
		}))
	}
	return apps
}

// rotation is one answer of a rotation route.
type rotation struct {
	status int
	token  string // the new token, on success
	code   string // the error code, on failure
	err    error
}

// rotate asks app to rotate token: POST mobile-refresh, or (legacy) the
// Deno library's GET /mobile/refresh-token. Safe in goroutines.
func rotate(app *testApp, token string, legacy bool) rotation {
	method, path := http.MethodPost, "/api/auth/mobile-refresh"
	if legacy {
		method, path = http.MethodGet, "/mobile/refresh-token"
	}
	req, err := http.NewRequest(method, app.Server.URL+path, nil)
	if err != nil {
		return rotation{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rotation{err: err}
	}
	defer resp.Body.Close()
	var out struct {
		SessionToken string `json:"session_token"`
		Payload      struct {
			Sid string `json:"sid"`
		} `json:"payload"`
		Code string `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return rotation{status: resp.StatusCode, err: err}
	}
	r := rotation{status: resp.StatusCode, token: out.SessionToken, code: out.Code}
	if legacy {
		r.token = out.Payload.Sid
	}
	return r
}

// bearerStatus is the status of GET path with token on app.
func bearerStatus(t *testing.T, app *testApp, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, app.Server.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rotationStorm rotates token n times at once, spread over the instances
// and over both rotation routes, and returns the answers.
func rotationStorm(apps []*testApp, token string, n int) []rotation {
	out := make([]rotation, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = rotate(apps[i%len(apps)], token, i%4 == 3)
		}()
	}
	wg.Wait()
	return out
}

// checkStorm checks the invariant of concurrent rotations of one token:
// every success answers the same successor, and a rotation that could not
// complete answers 503 (never 401, never another token). It returns the
// successor ("" if none succeeded) and how many answered 503.
func checkStorm(t *testing.T, token string, answers []rotation) (successor string, unavailable int) {
	t.Helper()
	for i, r := range answers {
		switch {
		case r.err != nil:
			t.Fatalf("rotation %d: %v", i, r.err)
		case r.status == http.StatusOK:
			if successor == "" {
				successor = r.token
			}
			if r.token != successor || r.token == token || len(r.token) != 43 {
				t.Fatalf("rotation %d answered %.8s…, another rotation %.8s…: one token forked into several", i, r.token, successor)
			}
		case r.status == http.StatusServiceUnavailable && r.token == "":
			unavailable++
		default:
			t.Fatalf("rotation %d: %d %s; want 200 with the one successor, or 503", i, r.status, r.code)
		}
	}
	return successor, unavailable
}

// checkOneDevice checks that, after the grace window, only want of all the
// tokens ever issued works (on every instance), and the account lists one
// device.
func checkOneDevice(t *testing.T, apps []*testApp, issued []string, want string) {
	t.Helper()
	for _, tok := range issued {
		for i, app := range apps {
			st := bearerStatus(t, app, "/api/whoami", tok)
			if (tok == want) != (st == http.StatusOK) {
				t.Fatalf("after the grace window, token %.8s… on instance %d: %d; only the last successor may work", tok, i, st)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, apps[0].Server.URL+"/api/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+want)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Sessions []map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK || len(list.Sessions) != 1 || list.Sessions[0]["current"] != true {
		t.Fatalf("the device list: %d %v %+v; want exactly this one device", resp.StatusCode, err, list.Sessions)
	}
}

func advanceAll(apps []*testApp, d time.Duration) {
	for _, a := range apps {
		a.Clock.Advance(d)
	}
}

// rotationRounds runs rounds of concurrent rotations of one native app's
// token over the instances, each followed by the grace window, and checks
// the invariant, the device list and the logout at the end. Before each
// round, fault (if set) may inject storage faults, which are removed once
// a rotation succeeded; the storm is retried until one does, as an app
// retries a 503.
func rotationRounds(t *testing.T, apps []*testApp, rounds, n int, fault func(round int) (remove []func())) {
	t.Helper()
	app := newNativeApp(t, apps[0])
	token := app.login("alice.test")
	issued := []string{token}
	for round := range rounds {
		before := apps[0].as.Stats()
		var removeFaults []func()
		if fault != nil {
			removeFaults = fault(round)
		}
		successor := ""
		for attempt := 0; successor == ""; attempt++ {
			if attempt == 5 {
				t.Fatalf("round %d: no rotation succeeded in %d storms", round, attempt)
			}
			var unavailable int
			successor, unavailable = checkStorm(t, token, rotationStorm(apps, token, n))
			if unavailable > 0 && bearerStatus(t, apps[round%len(apps)], "/api/whoami", token) != http.StatusOK {
				t.Fatalf("round %d: after %d rotations answered 503, the old token must still work", round, unavailable)
			}
		}
		for _, remove := range removeFaults {
			remove()
		}
		// A retry within the grace window, on any instance, answers it too.
		for i, a := range apps {
			if r := rotate(a, token, i%2 == 1); r.status != http.StatusOK || r.token != successor {
				t.Fatalf("round %d: a retry on instance %d: %d %.8s…, want the successor %.8s…", round, i, r.status, r.token, successor)
			}
		}
		if st := apps[0].as.Stats(); st.ReplaysDetected != 0 || st.RefreshGrants == before.RefreshGrants {
			t.Fatalf("round %d: %+v; want the login refreshed, and no refresh token replayed", round, st)
		}
		issued = append(issued, successor)
		advanceAll(apps, time.Minute+time.Second) // Mobile.RefreshGrace defaults to a minute
		checkOneDevice(t, apps, issued, successor)
		token = successor
	}
	if st, out, _ := app.call(http.MethodPost, "/api/logout", nil, token); st != http.StatusOK || out["success"] != true {
		t.Fatalf("logout: %d %v", st, out)
	}
	for _, tok := range issued {
		for i, a := range apps {
			if st := bearerStatus(t, a, "/api/whoami", tok); st != http.StatusUnauthorized {
				t.Fatalf("after logout, token %.8s… on instance %d: %d", tok, i, st)
			}
		}
	}
	if st := apps[0].as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("logout must revoke the login: %+v", st)
	}
}

// Fifty rotations of one token at once, over three instances sharing one
// store, repeated: on SQLite, Postgres and Redis (and memory, with one
// instance's handle shared), every one that succeeds answers the same
// successor, and after the grace window exactly one token works, one
// device is listed, and a logout ends it.
func TestConcurrentRotationsAcrossInstances(t *testing.T) {
	for _, backend := range []string{"memory", "sqlite", "postgres", "redis"} {
		t.Run(backend, func(t *testing.T) {
			apps := rotationCluster(t, testdb.Handles(t, backend, 3))
			rotationRounds(t, apps, 3, 50, nil)
		})
	}
}

// The same with faults injected at the save: the first writes of session
// records fail on every instance (a database refusal), and in another
// round the successor's index entry (after its record was written). The
// rotations that hit them answer 503 and change nothing the app depends
// on; the others, and the retries, answer the one successor.
func TestConcurrentRotationsWithFaultsAtTheSave(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres", "redis"} {
		t.Run(backend, func(t *testing.T) {
			apps := rotationCluster(t, testdb.Handles(t, backend, 3))
			rotationRounds(t, apps, 3, 50, func(round int) (remove []func()) {
				for _, a := range apps {
					switch round {
					case 0:
						remove = append(remove, a.Store.Fail(apptest.OpSet, "sess:", 2))
					case 1:
						remove = append(remove, a.Store.Fail(apptest.OpIndex, "acct:", 1))
					case 2:
						remove = append(remove, a.Store.Fail(apptest.OpLock, "device:", 3))
					}
				}
				return remove
			})
		})
	}
}

// One rotation at a time, with a fault at each storage step it takes: the
// device lock, the read of the token's record under it, the write of the
// old record (naming its successor), the successor's record, its index
// entry. Each answers 503, leaves the old token working, and the retry
// completes the rotation with one successor.
func TestRotationFaultAtEachStep(t *testing.T) {
	for _, fault := range []struct {
		name, op, prefix string
		skip             int
		n                int // failures; 0 = one, -1 = all until the rotation answered
	}{
		{"device lock", apptest.OpLock, "device:", 0, 0},
		{"reading the record", apptest.OpGet, "sess:", 1, 0}, // after the session check's read
		{"old record", apptest.OpSet, "sess:", 0, 0},
		{"successor record", apptest.OpSet, "sess:", 1, 0},
		// Every index write, until the rotation answered: the refresh's
		// follow-up in the background (which re-indexes the old record)
		// must not take the only fault.
		{"successor index", apptest.OpAddMember, "acct:", 0, -1},
	} {
		t.Run(fault.name, func(t *testing.T) {
			apps := rotationCluster(t, testdb.Handles(t, "memory", 1))
			a := apps[0]
			app := newNativeApp(t, a)
			token := app.login("alice.test")
			remove := a.Store.FailAfter(fault.op, fault.prefix, fault.skip, cmp.Or(fault.n, 1))
			r := rotate(a, token, false)
			remove()
			if r.status != http.StatusServiceUnavailable || r.token != "" {
				t.Fatalf("a rotation with a fault at the %s: %+v; want 503 and no token", fault.name, r)
			}
			if st := bearerStatus(t, a, "/api/whoami", token); st != http.StatusOK {
				t.Fatalf("the old token after the failed rotation: %d", st)
			}
			first := rotate(a, token, false)
			again := rotate(a, token, true)
			if first.status != http.StatusOK || again.token != first.token {
				t.Fatalf("the retries: %+v %+v; want one successor", first, again)
			}
			a.Clock.Advance(time.Minute + time.Second)
			checkOneDevice(t, apps, []string{token, first.token}, first.token)
		})
	}
}

// A rotation whose login the authorization server ended answers 401 on
// every instance and ends the device, even when many run at once; one that
// cannot reach the server answers 503 and keeps the token.
func TestRotationOfAnEndedLogin(t *testing.T) {
	apps := rotationCluster(t, testdb.Handles(t, "memory", 3))
	app := newNativeApp(t, apps[0])
	token := app.login("alice.test")
	apps[0].as.RevokeAll("alice.test")
	for i, r := range rotationStorm(apps, token, 12) {
		if r.status != http.StatusUnauthorized || r.token != "" {
			t.Fatalf("rotation %d of a revoked login: %d %+v", i, r.status, r)
		}
	}
	if st := bearerStatus(t, apps[1], "/api/whoami", token); st != http.StatusUnauthorized {
		t.Fatalf("the device of a revoked login: %d", st)
	}
	if n := len(apps[0].as.Sessions("alice.test")); n != 1 {
		t.Fatalf("%d OAuth sessions; want the one", n)
	}
}

// A rotation that cannot reach the authorization server answers 503 on
// both routes (never 401, never a token), and the token keeps working; once
// the server is back, the retry rotates.
func TestRotationDuringAnOutageKeepsTheToken(t *testing.T) {
	a := newTestApp(t, nil)
	outage := &tokenOutage{base: a.as.HTTPClient().Transport}
	flaky := startApp(t, a.as, func(o *apptest.Options) {
		o.HTTPClient = &http.Client{Transport: outage}
		o.Configure = func(c *ginoauth.Config) { c.Mobile.RedirectURIs = []string{appRedirect} }
	})
	token := newNativeApp(t, flaky).login("alice.test")
	outage.on.Store(true)
	for _, legacy := range []bool{false, true} {
		if r := rotate(flaky, token, legacy); r.status != http.StatusServiceUnavailable || r.token != "" {
			t.Fatalf("a rotation during an outage (legacy %v): %+v; want 503", legacy, r)
		}
	}
	if st := bearerStatus(t, flaky, "/api/whoami", token); st != http.StatusOK {
		t.Fatalf("the token after a rotation that could not complete: %d", st)
	}
	outage.on.Store(false)
	if r := rotate(flaky, token, false); r.status != http.StatusOK || r.token == "" {
		t.Fatalf("the retry after the outage: %+v", r)
	}
}
