package ginoauth_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// identityEvents collects a Manager's events for a test.
type identityEvents struct {
	mu     sync.Mutex
	events []ginoauth.Event
	added  chan struct{}
}

func newIdentityEvents() *identityEvents { return &identityEvents{added: make(chan struct{}, 1024)} }

func (l *identityEvents) add(e ginoauth.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	l.added <- struct{}{}
}

// wait returns the first event that match accepts, waiting for it (the
// checks run in the background) up to a generous deadline.
func (l *identityEvents) wait(t *testing.T, what string, match func(ginoauth.Event) bool) ginoauth.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if match(e) {
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no %s event; events: %+v", what, l.all())
		}
	}
}

func (l *identityEvents) all() []ginoauth.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ginoauth.Event(nil), l.events...)
}

func (l *identityEvents) count(match func(ginoauth.Event) bool) int {
	n := 0
	for _, e := range l.all() {
		if match(e) {
			n++
		}
	}
	return n
}

// identityApps starts n instances of one app on the stores (alternating
// between the two handles on one database), with one event log.
func identityApps(t *testing.T, as *ginoauthtest.Server, stores [2]storage.Store, n int, configure func(*ginoauth.Config)) ([]*testApp, *identityEvents) {
	t.Helper()
	log := newIdentityEvents()
	var apps []*testApp
	for i := range n {
		apps = append(apps, startApp(t, as, func(o *apptest.Options) {
			o.Storage = stores[i%2]
			if i > 0 {
				o.ClientConfig = apps[0].OAuthConfig // one app, one client_id
			}
			o.Configure = func(c *ginoauth.Config) {
				c.OnEvent = log.add
				if configure != nil {
					configure(c)
				}
			}
		}))
	}
	return apps, log
}

// use makes one request on each app, then moves every app's clock past
// the identity interval: the next request on any of them is due a check.
func passInterval(t *testing.T, apps []*testApp, sid string) {
	t.Helper()
	for _, a := range apps {
		if st, err := getStatus(a.Server.URL, "/api/session", sid); err != nil || st != http.StatusOK {
			t.Fatalf("session check: %d %v", st, err)
		}
		a.Clock.Advance(61 * time.Minute)
	}
}

func sessionJSON(t *testing.T, b *ginoauthtest.Browser) (int, map[string]any) {
	t.Helper()
	r := b.Get("/api/session")
	var out map[string]any
	_ = json.Unmarshal(r.Body, &out)
	return r.Status, out
}

func isIdentityChange(e ginoauth.Event) bool { return e.Type == ginoauth.EventIdentityChanged }

// A handle changed at the PDS (com.atproto.identity.updateHandle) is
// noticed by the background check within the interval, on every store,
// with two instances sharing one: the session shows the new handle, one
// event says what changed, and the two instances made one check between
// them (the window's lease), off the request path.
func TestIdentityHandleChangeFollowed(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			s1, s2 := be.Pair(t)
			as := ginoauthtest.New(t, ginoauthtest.Options{})
			as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
			as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
			apps, log := identityApps(t, as, [2]storage.Store{s1, s2}, 2, nil)
			b := apps[0].NewBrowser()
			b.Login("alice.test", "")
			sid := b.Cookie("sid").Value
			passInterval(t, apps, sid)
			before := as.Stats().RepoStatusCalls

			if err := as.UpdateHandle("alice.test", "alice2.test"); err != nil {
				t.Fatal(err)
			}
			for _, a := range apps { // both instances are due: one checks
				if st, err := getStatus(a.Server.URL, "/api/session", sid); err != nil || st != http.StatusOK {
					t.Fatalf("session check: %d %v", st, err)
				}
			}
			e := log.wait(t, "identity_changed", isIdentityChange)
			if e.Handle != "alice2.test" || e.PreviousHandle != "alice.test" || e.DID != apps[0].alice.DID.String() || e.PDS != as.Issuer() || e.PreviousPDS != "" {
				t.Fatalf("event %+v", e)
			}
			if st, out := sessionJSON(t, b); st != http.StatusOK || out["handle"] != "alice2.test" {
				t.Fatalf("session after the change: %d %v", st, out)
			}
			for _, a := range apps {
				a.Stop() // waits for the background checks
			}
			if n := as.Stats().RepoStatusCalls - before; n != 1 {
				t.Fatalf("%d identity checks by two instances within one interval; want 1", n)
			}
			if n := log.count(isIdentityChange); n != 1 {
				t.Fatalf("%d identity_changed events; want 1", n)
			}
		})
	}
}

// A handle that no longer resolves to the account shows as
// handle.invalid, never as the stale name.
func TestIdentityUnverifiedHandleIsInvalid(t *testing.T) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	apps, log := identityApps(t, as, [2]storage.Store{nil, nil}, 1, nil)
	b := apps[0].NewBrowser()
	b.Login("alice.test", "")
	passInterval(t, apps, b.Cookie("sid").Value)
	if err := as.UnpublishHandle("alice.test"); err != nil {
		t.Fatal(err)
	}
	b.Get("/api/session")
	log.wait(t, "identity_changed", isIdentityChange)
	if st, out := sessionJSON(t, b); st != http.StatusOK || out["handle"] != "handle.invalid" {
		t.Fatalf("session: %d %v", st, out)
	}
}

// An account moved to another PDS behind the same authorization server:
// its calls go to the new PDS from the check on, none to the old one, and
// the login goes on.
func TestIdentityMoveSameAuthorizationServer(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			s1, s2 := be.Pair(t)
			as := ginoauthtest.New(t, ginoauthtest.Options{})
			as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
			as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
			as.AddPDSHost("pds2.test")
			apps, log := identityApps(t, as, [2]storage.Store{s1, s2}, 2, nil)
			b := apps[0].NewBrowser()
			b.Login("alice.test", "")
			if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
				t.Fatalf("PDS call: %d %s", r.Status, r.Body)
			}
			passInterval(t, apps, b.Cookie("sid").Value)
			if err := as.MoveAccount("alice.test", "https://pds2.test"); err != nil {
				t.Fatal(err)
			}
			b.Get("/api/session")
			e := log.wait(t, "identity_changed", isIdentityChange)
			if e.PDS != "https://pds2.test" || e.PreviousPDS != "https://pds.test" {
				t.Fatalf("event %+v", e)
			}
			old := as.PDSRequests("pds.test")
			sid := b.Cookie("sid").Value
			for i := range 4 { // on both instances
				if st, err := getStatus(apps[i%2].Server.URL, "/api/pds-session", sid); err != nil || st != http.StatusOK {
					t.Fatalf("PDS call after the move: %d %v", st, err)
				}
			}
			if as.PDSRequests("pds.test") != old || as.PDSRequests("pds2.test") < 4 {
				t.Fatalf("calls after the move: old PDS %d more, new PDS %d; want none and all (4, and nonce rounds)", as.PDSRequests("pds.test")-old, as.PDSRequests("pds2.test"))
			}
		})
	}
}

// An account moved to a PDS of another authorization server: its tokens
// are worthless there, so its sessions end with account_moved (the
// re-login path), its grant is revoked where it was issued, and no PDS
// call carries its tokens anywhere afterwards.
func TestIdentityMoveOtherAuthorizationServer(t *testing.T) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	other := ginoauthtest.New(t, ginoauthtest.Options{Host: "pds2.test"})
	other.CreateAccount(ginoauthtest.Account{DID: alice.DID, Handle: "alice.test"})
	if err := as.Route("https://pds2.test", other.URL()); err != nil {
		t.Fatal(err)
	}
	apps, log := identityApps(t, as, [2]storage.Store{nil, nil}, 1, nil)
	b := apps[0].NewBrowser()
	b.Login("alice.test", "")
	passInterval(t, apps, b.Cookie("sid").Value)
	if err := as.MoveAccount("alice.test", "https://pds2.test"); err != nil {
		t.Fatal(err)
	}
	b.Get("/api/session")
	e := log.wait(t, "session_ended", func(e ginoauth.Event) bool { return e.Type == ginoauth.EventSessionEnded })
	if e.Reason != ginoauth.EndAccountMoved {
		t.Fatalf("end reason %q; want account_moved", e.Reason)
	}
	oldCalls, newCalls := as.PDSRequests("pds.test"), other.PDSRequests("pds2.test")
	if r := b.Get("/api/pds-session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("PDS call after the move: %d %s; want 401 (log in again)", r.Status, r.Body)
	}
	if st, _ := sessionJSON(t, b); st != http.StatusUnauthorized {
		t.Fatalf("session after the move: %d", st)
	}
	if as.PDSRequests("pds.test") != oldCalls || other.PDSRequests("pds2.test") != newCalls {
		t.Fatal("a PDS call carried the moved account's tokens")
	}
	for _, s := range as.Sessions("alice.test") {
		if s.Active {
			t.Fatalf("the grant at the old authorization server is still live: %+v", s.EndReason)
		}
	}
}

// Deactivated, taken down and deleted accounts: the PDS's answer to a call
// (AccountDeactivated, AccountTakedown, AccountNotFound) ends the
// account's sessions on every instance with a reason of its own, and the
// call answers 401 (log in again), never a 5xx; so does a refused refresh
// (a takedown or deletion revokes the tokens), rather than
// refresh_refused; without any call, the background check finds the same.
func TestIdentityAccountStatusEndsSessions(t *testing.T) {
	cases := []struct {
		name   string
		change func(*ginoauthtest.Server) error
		reason ginoauth.EndReason
	}{
		{"deactivated", func(s *ginoauthtest.Server) error { return s.DeactivateAccount("alice.test") }, ginoauth.EndAccountDeactivated},
		{"taken_down", func(s *ginoauthtest.Server) error { return s.TakeDownAccount("alice.test") }, ginoauth.EndAccountTakenDown},
		{"deleted", func(s *ginoauthtest.Server) error { return s.DeleteAccount("alice.test") }, ginoauth.EndAccountDeleted},
	}
	for _, be := range testdb.All() {
		for _, tc := range cases {
			for _, path := range []string{"answer", "background", "refresh"} {
				if path == "refresh" && tc.reason == ginoauth.EndAccountDeactivated {
					continue // a deactivated account's tokens still refresh
				}
				t.Run(be.Name+"/"+tc.name+"/"+path, func(t *testing.T) {
					s1, s2 := be.Pair(t)
					as := ginoauthtest.New(t, ginoauthtest.Options{})
					as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
					as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
					apps, log := identityApps(t, as, [2]storage.Store{s1, s2}, 2, nil)
					b := apps[0].NewBrowser()
					b.Login("alice.test", "")
					sid := b.Cookie("sid").Value
					if err := tc.change(as); err != nil {
						t.Fatal(err)
					}
					switch path {
					case "refresh":
						// The reference PDS deletes the tokens of an account it
						// takes down or deletes: the refresh finds out first.
						as.ExpireAccessTokens()
						if st, err := getStatus(apps[1].Server.URL, "/api/pds-session", sid); err != nil || st != http.StatusUnauthorized {
							t.Fatalf("call after the change: %d %v; want 401", st, err)
						}
					case "answer":
						st, err := postStatus(apps[1].Server.URL, "/api/post", sid)
						if err != nil || st != http.StatusUnauthorized {
							t.Fatalf("write after the change: %d %v; want 401", st, err)
						}
					default:
						passInterval(t, apps, sid)
						b.Get("/api/session")
					}
					e := log.wait(t, "session_ended", func(e ginoauth.Event) bool { return e.Type == ginoauth.EventSessionEnded })
					if e.Reason != tc.reason {
						t.Fatalf("end reason %q; want %q", e.Reason, tc.reason)
					}
					for _, a := range apps {
						if st, err := getStatus(a.Server.URL, "/api/session", sid); err != nil || st != http.StatusUnauthorized {
							t.Fatalf("session after the end: %d %v", st, err)
						}
					}
					for _, a := range apps {
						a.Stop() // waits for the background work
					}
					if n := log.count(func(e ginoauth.Event) bool { return e.Type == ginoauth.EventSessionEnded }); n != 1 {
						t.Fatalf("%d session_ended events for one session; want 1: %+v", n, log.all())
					}
				})
			}
		}
	}
}

// postStatus sends one same-origin POST with the session cookie.
func postStatus(baseURL, path, sid string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, baseURL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Origin", baseURL)
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// With KeepDeactivatedSessions, a deactivated account's sessions are kept
// and marked; the mark goes once the account is active again.
func TestIdentityKeepDeactivatedSessions(t *testing.T) {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	apps, log := identityApps(t, as, [2]storage.Store{nil, nil}, 1, func(c *ginoauth.Config) { c.KeepDeactivatedSessions = true })
	b := apps[0].NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	if err := as.DeactivateAccount("alice.test"); err != nil {
		t.Fatal(err)
	}
	// The PDS's refusal reaches the app's handler (the test app answers
	// 502 for any PDS error), and the session stays.
	if st, err := postStatus(apps[0].Server.URL, "/api/post", sid); err != nil || st != http.StatusBadGateway {
		t.Fatalf("write of a deactivated account: %d %v; want the PDS's refusal passed on", st, err)
	}
	e := log.wait(t, "identity_changed", isIdentityChange)
	if e.AccountStatus != "deactivated" {
		t.Fatalf("event %+v", e)
	}
	if st, out := sessionJSON(t, b); st != http.StatusOK || out["accountStatus"] != "deactivated" {
		t.Fatalf("session of a deactivated account: %d %v", st, out)
	}
	if err := as.ActivateAccount("alice.test"); err != nil {
		t.Fatal(err)
	}
	passInterval(t, apps, sid)
	b.Get("/api/session")
	log.wait(t, "second identity_changed", func(e ginoauth.Event) bool { return isIdentityChange(e) && e.AccountStatus == "" })
	if st, out := sessionJSON(t, b); st != http.StatusOK || out["accountStatus"] != nil {
		t.Fatalf("session after reactivation: %d %v", st, out)
	}
	if n := log.count(func(e ginoauth.Event) bool { return e.Type == ginoauth.EventSessionEnded }); n != 0 {
		t.Fatalf("%d sessions ended; want none", n)
	}
}
