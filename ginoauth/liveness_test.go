package ginoauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// pdsCounter counts the getSession calls the OAuth clients send the PDS.
type pdsCounter struct {
	base http.RoundTripper
	n    atomic.Int32
}

func (p *pdsCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/xrpc/com.atproto.server.getSession") {
		p.n.Add(1)
	}
	return p.base.RoundTrip(req)
}

// livenessApps starts two instances of one app on one shared store with
// the liveness check on (every 5 minutes, the default) and events
// collected; their clocks are moved together with advance.
func livenessApps(t *testing.T, be testdb.Backend, events *eventLog, configure func(*ginoauth.Config)) (one, two *testApp, calls *pdsCounter, advance func(time.Duration)) {
	t.Helper()
	s1, s2 := be.Pair(t)
	one = newTestApp(t, s1, func(c *ginoauth.Config) {
		c.OnEvent = events.add
		if configure != nil {
			configure(c)
		}
	})
	calls = &pdsCounter{base: one.as.HTTPClient().Transport}
	two = startApp(t, one.as, func(o *apptest.Options) {
		o.Storage = s2
		o.ClientConfig = one.OAuthConfig
		o.HTTPClient = &http.Client{Transport: calls}
		o.Configure = func(c *ginoauth.Config) {
			c.OnEvent = events.add
			if configure != nil {
				configure(c)
			}
		}
	})
	return one, two, calls, func(d time.Duration) { one.Clock.Advance(d); two.Clock.Advance(d) }
}

// sweepBoth runs one liveness sweep on each instance at once and returns
// how many sessions each checked.
func sweepBoth(one, two *testApp) (int, int) {
	var a, b int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = ginoauth.SweepLiveness(context.Background(), one.Manager) }()
	go func() { defer wg.Done(); b = ginoauth.SweepLiveness(context.Background(), two.Manager) }()
	wg.Wait()
	return a, b
}

// A grant the user revokes at the server ends its device session at the
// next liveness window, on every store, with one check per window across
// two instances that both served the session; no request after it is
// answered as logged in, and the JSON answer says why and where to log in.
func TestLivenessCheckEndsAGrantRevokedAtTheServer(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			events := &eventLog{}
			one, two, calls, advance := livenessApps(t, be, events, nil)
			b := one.NewBrowser()
			b.Login("alice.test", "")
			sid := b.Cookie("sid").Value
			// The session is active on both instances.
			for _, base := range []string{one.Server.URL, two.Server.URL} {
				if st, err := getStatus(base, "/api/whoami", sid); err != nil || st != http.StatusOK {
					t.Fatalf("whoami on %s: %d %v", base, st, err)
				}
			}
			waitFor(t, func() bool { return calls.n.Load() == 0 }) // (no check at login: the grant is new)

			// A live grant: one check for both instances in this window.
			if a, c := sweepBoth(one, two); a+c != 1 {
				t.Fatalf("window 1: the instances checked %d and %d times; want one check in all", a, c)
			}
			if a, c := sweepBoth(one, two); a+c != 0 {
				t.Fatalf("window 1 again: checked %d and %d times; want none (already checked)", a, c)
			}
			if r := b.Get("/api/whoami"); r.Status != http.StatusOK {
				t.Fatalf("a live grant must keep the session: %d %s", r.Status, r.Body)
			}

			if n := one.as.RevokeAll("alice.test"); n != 1 {
				t.Fatalf("revoked %d sessions at the server, want 1", n)
			}
			advance(5 * time.Minute) // the next window
			if a, c := sweepBoth(one, two); a+c != 1 {
				t.Fatalf("window 2: checked %d and %d times; want one check in all", a, c)
			}
			for _, base := range []string{one.Server.URL, two.Server.URL} {
				if st, err := getStatus(base, "/dashboard", sid); err != nil || st != http.StatusOK {
					t.Fatalf("dashboard: %d %v", st, err)
				}
			}
			r := b.Get("/api/whoami")
			body := r.JSON(t)
			if r.Status != http.StatusUnauthorized || body["reason"] != "revoked_at_server" || body["code"] != "oauth_session_gone" {
				t.Fatalf("after the check: want 401 revoked_at_server, got %d %s", r.Status, r.Body)
			}
			login, _ := body["login"].(string)
			u, err := url.Parse(login)
			if err != nil || u.Path != "/login" || u.Query().Get("handle") != one.alice.DID.String() || u.Query().Get("redirect") != "/api/whoami" {
				t.Fatalf("login URL %q: want /login with the DID and the return path", login)
			}
			if st, _ := getStatus(two.Server.URL, "/api/whoami", sid); st != http.StatusUnauthorized {
				t.Fatalf("the other instance still answers %d", st)
			}
			b2 := two.NewBrowser() // the session route, on the other instance, with the same cookie
			b2.SetCookie(&http.Cookie{Name: "sid", Value: sid})
			if r := b2.Get("/api/session"); r.Status != http.StatusUnauthorized || r.JSON(t)["reason"] != "revoked_at_server" ||
				!strings.Contains(r.JSON(t)["login"].(string), "redirect=%2F") {
				t.Fatalf("the session route: %d %s", r.Status, r.Body)
			}
			waitFor(t, func() bool {
				return events.count(ginoauth.EventSessionEnded, ginoauth.EndRevokedAtServer) == 1 && events.count(ginoauth.EventGrantRevoked, "") == 1
			})
		})
	}
}

// A session left alone for more than an hour is not checked (it is not
// active); when it comes back, its first request makes it active again
// and the next sweep checks it: a grant revoked while nobody used it ends
// within a tick of the user's return. The request itself is not held up.
func TestLivenessCheckOfAReturningSession(t *testing.T) {
	events := &eventLog{}
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.OnEvent = events.add })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	b.Get("/dashboard")
	a.as.RevokeAll("alice.test")
	a.Clock.Advance(2 * time.Hour)
	if n := ginoauth.SweepLiveness(context.Background(), a.Manager); n != 0 {
		t.Fatalf("an idle session was checked (%d)", n)
	}
	if r := b.Get("/dashboard"); r.Status != http.StatusOK || string(r.Body) != "hello alice.test" {
		t.Fatalf("the returning request: %d %s", r.Status, r.Body)
	}
	if n := ginoauth.SweepLiveness(context.Background(), a.Manager); n != 1 {
		t.Fatalf("the next sweep checked %d sessions, want the returning one", n)
	}
	waitFor(t, func() bool { return events.count(ginoauth.EventSessionEnded, ginoauth.EndRevokedAtServer) == 1 })
	if r := b.Get("/api/whoami"); r.Status != http.StatusUnauthorized {
		t.Fatalf("after the check: %d %s", r.Status, r.Body)
	}
}

// A refresh refused before the grant's limits is a revocation at the
// server (revoked_at_server); with ReturnToLogin a browser's page goes
// back through the login with the DID as login_hint and comes back to the
// page logged in, while a JSON request gets 401 with the reason.
func TestBackToLoginAfterARevocation(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			events := &eventLog{}
			s, _ := be.Pair(t)
			a := newTestApp(t, s, func(c *ginoauth.Config) {
				c.OnEvent = events.add
				c.ReturnToLogin = true
			})
			b := a.NewBrowser()
			b.Login("alice.test", "")
			a.as.RevokeAll("alice.test")
			a.as.ExpireAccessTokens()
			if r := b.Get("/api/pds-session"); r.Status != http.StatusUnauthorized {
				t.Fatalf("PDS call after the revocation: %d %s", r.Status, r.Body)
			}
			html := http.Header{"Accept": {"text/html,application/xhtml+xml"}}
			r := b.Do(http.MethodGet, "/api/whoami?tab=2", nil, html)
			if r.Status != http.StatusSeeOther {
				t.Fatalf("a browser's page: want 303 back to the login, got %d %s", r.Status, r.Body)
			}
			loc := r.Header.Get("Location")
			start := b.Get(loc)
			if start.Status != http.StatusFound {
				t.Fatalf("the login route: want 302 to the authorization server, got %d %s", start.Status, start.Body)
			}
			auth := start.Header.Get("Location")
			reqs := a.as.AuthorizationRequests()
			if hint := reqs[len(reqs)-1].LoginHint; hint != a.alice.DID.String() {
				t.Fatalf("login_hint %q, want the DID", hint)
			}
			cb := b.Get(b.Consent(auth, "alice.test"))
			if cb.Header.Get("Location") != "/api/whoami?tab=2" {
				t.Fatalf("back to %q, want the page", cb.Header.Get("Location"))
			}
			if r := b.Get("/api/whoami"); r.Status != http.StatusOK {
				t.Fatalf("logged in again: %d %s", r.Status, r.Body)
			}
			waitFor(t, func() bool { return events.count(ginoauth.EventSessionEnded, ginoauth.EndRevokedAtServer) == 1 })
		})
	}
}

// Without ReturnToLogin a browser gets the 401, with the reason; a logout
// leaves no note.
func TestBackToLoginOffAndLogout(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	a.as.RevokeAll("alice.test")
	a.as.ExpireAccessTokens()
	b.Get("/api/pds-session")
	req, _ := http.NewRequest(http.MethodGet, a.Server.URL+"/api/whoami", nil)
	req.Header.Set("Accept", "text/html")
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ReturnToLogin off: want 401, got %d", resp.StatusCode)
	}

	b2 := a.NewBrowser()
	b2.Login("bob.test", "")
	sid2 := b2.Cookie("sid").Value
	if r := b2.PostForm("/api/logout", nil); r.Status >= 400 {
		t.Fatalf("logout: %d", r.Status)
	}
	req, _ = http.NewRequest(http.MethodGet, a.Server.URL+"/api/whoami", nil)
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid2})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	body.Write(buf[:n])
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body.String(), "login") && strings.Contains(body.String(), "reason") {
		t.Fatalf("after a logout: want a plain 401, got %d %s", resp.StatusCode, body.String())
	}
}

// Refreshes are reported with the scopes granted now and before; a change
// of scopes is reported on its own.
func TestTokenRefreshEvents(t *testing.T) {
	events := &eventLog{}
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.OnEvent = events.add })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	waitFor(t, func() bool { return events.count(ginoauth.EventTokensRefreshed, "") == 1 })
	events.mu.Lock()
	defer events.mu.Unlock()
	for _, e := range events.ev {
		if e.Type != ginoauth.EventTokensRefreshed {
			continue
		}
		if e.DID != a.alice.DID.String() || e.Session == "" || e.Kind != "web" || !slices.Contains(e.Scopes, "atproto") {
			t.Fatalf("refresh event %+v", e)
		}
	}
}

// A permission set re-resolved at refresh that grants less is reported as
// a change of scopes, with the old and the new sets.
func TestScopesChangedEvent(t *testing.T) {
	events := &eventLog{}
	a := permApp(t, func(c *ginoauth.Config) { c.OnEvent = events.add })
	b := a.NewBrowser()
	b.Get(b.Consent(start(t, b, url.Values{"handle": {"alice.test"}, "scope": {notesSet}}), "alice.test"))
	if err := a.as.PublishPermissionSet("com.example.authNotes", "repo:com.example.note"); err != nil {
		t.Fatal(err)
	}
	a.as.ExpireAccessTokens()
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK { // refreshes
		t.Fatalf("PDS call: %d %s", r.Status, r.Body)
	}
	waitFor(t, func() bool { return events.count(ginoauth.EventScopesChanged, "") == 1 })
	events.mu.Lock()
	defer events.mu.Unlock()
	for _, e := range events.ev {
		if e.Type == ginoauth.EventScopesChanged && (!slices.Contains(e.PreviousScopes, photoWrite) || slices.Contains(e.Scopes, photoWrite) || e.Session == "") {
			t.Fatalf("scopes_changed: %+v; want photo write in the old set only", e)
		}
	}
}

// Storage faults at the worst moments lose nothing: a claim that cannot be
// counted checks nothing (no PDS call, the session intact); an end that
// fails after the server said "revoked" leaves the session as it was,
// and the next window ends it.
func TestLivenessCheckUnderStorageFaults(t *testing.T) {
	events := &eventLog{}
	one, two, calls, advance := livenessApps(t, testdb.All()[0], events, nil)
	b := one.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	if st, _ := getStatus(two.Server.URL, "/api/whoami", sid); st != http.StatusOK {
		t.Fatalf("whoami on two: %d", st)
	}

	stop := two.Store.Fail(apptest.OpIncr, "alive:", -1)
	if n := ginoauth.SweepLiveness(context.Background(), two.Manager); n != 0 || calls.n.Load() != 0 {
		t.Fatalf("with the claim failing: %d checks, %d PDS calls; want none", n, calls.n.Load())
	}
	stop()
	if r := b.Get("/api/whoami"); r.Status != http.StatusOK {
		t.Fatalf("the session must be intact: %d", r.Status)
	}

	one.as.RevokeAll("alice.test")
	advance(5 * time.Minute)
	stop = two.Store.Fail(apptest.OpDelete, "sess:", 1) // the end's first deletion
	if n := ginoauth.SweepLiveness(context.Background(), two.Manager); n != 1 {
		t.Fatalf("want one check, got %d", n)
	}
	stop()
	if st, _ := getStatus(two.Server.URL, "/api/whoami", sid); st != http.StatusOK {
		t.Fatalf("an end that failed must leave the session as it was: %d", st)
	}
	if events.count(ginoauth.EventGrantRevoked, "") != 0 {
		t.Fatal("no grant_revoked before the session ended")
	}
	advance(5 * time.Minute)
	if n := ginoauth.SweepLiveness(context.Background(), two.Manager); n != 1 {
		t.Fatalf("next window: want one check, got %d", n)
	}
	if st, _ := getStatus(two.Server.URL, "/api/whoami", sid); st != http.StatusUnauthorized {
		t.Fatalf("next window: the session must have ended: %d", st)
	}
	waitFor(t, func() bool { return events.count(ginoauth.EventSessionEnded, "") == 1 })
	// The refused refresh deleted the client's copy: the retry finds it
	// gone (revoked), a reason that also sends the user back to login.
	if n := events.count(ginoauth.EventSessionEnded, ginoauth.EndRevoked); n != 1 {
		t.Fatalf("the retry's end: %d sessions ended revoked, want 1", n)
	}
}

// livenessMetrics records LivenessChecked, the optional Metrics method.
type livenessMetrics struct {
	nopMetricsForTest
	mu       sync.Mutex
	outcomes []string
}

func (l *livenessMetrics) LivenessChecked(outcome string) {
	l.mu.Lock()
	l.outcomes = append(l.outcomes, outcome)
	l.mu.Unlock()
}

type nopMetricsForTest struct{}

func (nopMetricsForTest) LoginStarted(string)                  {}
func (nopMetricsForTest) LoginFinished(string, time.Duration)  {}
func (nopMetricsForTest) SessionChecked(string, time.Duration) {}
func (nopMetricsForTest) StorageFailed(string)                 {}

// A Metrics with LivenessChecked counts the checks by outcome.
func TestLivenessMetrics(t *testing.T) {
	met := &livenessMetrics{}
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.Metrics = met })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	b.Get("/api/whoami") // active here
	ginoauth.SweepLiveness(context.Background(), a.Manager)
	a.as.RevokeAll("alice.test")
	a.Clock.Advance(5 * time.Minute)
	ginoauth.SweepLiveness(context.Background(), a.Manager)
	met.mu.Lock()
	defer met.mu.Unlock()
	if !slices.Equal(met.outcomes, []string{"live", "ended"}) {
		t.Fatalf("outcomes %v, want live then ended", met.outcomes)
	}
}

// A native app's session is checked too, and its JSON 401 says why.
func TestLivenessCheckOfANativeAppSession(t *testing.T) {
	apps := rotationCluster(t, testdb.Handles(t, "memory", 1))
	a := apps[0]
	token := newNativeApp(t, a).login("alice.test")
	if st := bearerStatus(t, a, "/api/whoami", token); st != http.StatusOK {
		t.Fatalf("whoami: %d", st)
	}
	a.as.RevokeAll("alice.test")
	if n := ginoauth.SweepLiveness(context.Background(), a.Manager); n != 1 {
		t.Fatalf("want one check, got %d", n)
	}
	req, _ := http.NewRequest(http.MethodGet, a.Server.URL+"/api/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusUnauthorized || body["reason"] != "revoked_at_server" {
		t.Fatalf("after the check: %d %v", resp.StatusCode, body)
	}
}

// The keep-alive's refresh refused before the grant's limits is a
// revocation at the server: the grant is reported revoked and its device
// session ends with revoked_at_server.
func TestKeepAliveFindsAGrantRevokedAtTheServer(t *testing.T) {
	la := newLifeApps(t, []storage.Store{testdb.SQLite(t)}, true, func(c *ginoauth.Config) { c.KeepAlive = true })
	b := la.login()
	la.advance(80 * day) // due for its keep-alive
	la.as.RevokeAll("alice.test")
	if n := ginoauth.SweepKeepAlive(context.Background(), la.apps[0].Manager); n != 0 {
		t.Fatalf("refreshed %d grants; want none (revoked)", n)
	}
	la.eventually(func() bool {
		return la.events.count(ginoauth.EventSessionEnded, ginoauth.EndRevokedAtServer) == 1 && la.events.count(ginoauth.EventGrantRevoked, "") == 1
	}, "the session to end revoked_at_server, once")
	if r := b.Get("/api/whoami"); r.Status != http.StatusUnauthorized || r.JSON(t)["reason"] != "revoked_at_server" {
		t.Fatalf("after the keep-alive: %d %s", r.Status, r.Body)
	}
}
