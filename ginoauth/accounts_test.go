package ginoauth_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

// Several accounts in one browser (accounts.go).

// addAccount runs an "add another account" login for handle in b.
func addAccount(t testing.TB, b *ginoauthtest.Browser, handle string) ginoauthtest.Response {
	t.Helper()
	r := b.Get("/login?add=1&handle=" + url.QueryEscape(handle))
	if r.Status != http.StatusFound {
		t.Fatalf("add %s: want a redirect to the authorization server, got %d %s", handle, r.Status, r.Body)
	}
	return b.Get(b.Consent(r.Header.Get("Location"), handle))
}

// accountsOf is the browser's accounts as the session route lists them
// ("did:active" each, in order), and the active DID.
func accountsOf(t *testing.T, b *ginoauthtest.Browser) (list []string, active string) {
	t.Helper()
	r := b.Get("/api/session")
	if r.Status != http.StatusOK {
		return nil, ""
	}
	js := r.JSON(t)
	for _, a := range js["accounts"].([]any) {
		m := a.(map[string]any)
		list = append(list, fmt.Sprintf("%s:%v", m["did"], m["active"]))
	}
	return list, js["did"].(string)
}

// sameOrigin is the header of a same-origin request of the app's own page.
func sameOrigin(a *testApp, contentType string) http.Header {
	return http.Header{"Origin": {a.Server.URL}, "Sec-Fetch-Site": {"same-origin"}, "Content-Type": {contentType}}
}

func switchTo(t *testing.T, a *testApp, b *ginoauthtest.Browser, did string) ginoauthtest.Response {
	t.Helper()
	return b.Do(http.MethodPost, "/api/accounts/switch", strings.NewReader(`{"did":"`+did+`"}`), sameOrigin(a, "application/json"))
}

// whoami answers the request's DID as the app (CurrentUser) and as the
// PDS (a call with the user's OAuth session) see it.
func whoami(t *testing.T, b doer, header http.Header) (app, pds string) {
	t.Helper()
	r := b.Do(http.MethodGet, "/api/whoami", nil, header)
	if r.Status == http.StatusOK {
		app = r.JSON(t)["did"].(string)
	}
	r = b.Do(http.MethodGet, "/api/pds-session", nil, header)
	if r.Status == http.StatusOK {
		pds = r.JSON(t)["did"].(string)
	}
	return app, pds
}

func TestAccountsAddSwitchSignOut(t *testing.T) {
	for _, sc := range storages(t) {
		t.Run(sc.name, func(t *testing.T) {
			a := newTestApp(t, sc.open(t))
			alice, bob := a.alice.DID.String(), a.bob.DID.String()
			b := a.NewBrowser()
			b.Login("alice.test", "")
			if r := addAccount(t, b, "bob.test"); r.Status != http.StatusFound {
				t.Fatalf("add bob: %d %s", r.Status, r.Body)
			}
			list, active := accountsOf(t, b)
			if active != bob || strings.Join(list, " ") != bob+":true "+alice+":false" {
				t.Fatalf("after adding bob: active %s, accounts %v", active, list)
			}
			if app, pds := whoami(t, b, nil); app != bob || pds != bob {
				t.Fatalf("bob active: app %s, PDS %s", app, pds)
			}
			// Switch to alice: every answer is hers, the PDS's too.
			if r := switchTo(t, a, b, alice); r.Status != http.StatusOK || r.JSON(t)["did"] != alice {
				t.Fatalf("switch to alice: %d %s", r.Status, r.Body)
			}
			if app, pds := whoami(t, b, nil); app != alice || pds != alice {
				t.Fatalf("alice active: app %s, PDS %s", app, pds)
			}
			if list, _ := accountsOf(t, b); strings.Join(list, " ") != alice+":true "+bob+":false" {
				t.Fatalf("after the switch: %v", list)
			}
			// An account the browser does not hold: 404, nothing changes.
			if r := switchTo(t, a, b, "did:plc:nobodyhere"); r.Status != http.StatusNotFound {
				t.Fatalf("switch to a stranger: %d %s", r.Status, r.Body)
			}
			// Each account's device list shows this browser once.
			for _, did := range []string{alice, bob} {
				list, err := a.Manager.SessionsOf(context.Background(), did, nil)
				if err != nil || len(list) != 1 {
					t.Fatalf("%s's devices: %v %v", did, list, err)
				}
			}
			// Sign out of the active one (alice): bob becomes active, alice's
			// session and tokens are gone, bob's are not.
			r := b.Do(http.MethodPost, "/api/accounts/logout", nil, sameOrigin(a, "application/x-www-form-urlencoded"))
			if r.Status != http.StatusOK || r.JSON(t)["active"].(map[string]any)["did"] != bob {
				t.Fatalf("sign out of alice: %d %s", r.Status, r.Body)
			}
			if app, pds := whoami(t, b, nil); app != bob || pds != bob {
				t.Fatalf("after signing out of alice: app %s, PDS %s", app, pds)
			}
			if list, _ := a.Manager.SessionsOf(context.Background(), alice, nil); len(list) != 0 {
				t.Fatalf("alice's session survived her sign-out: %v", list)
			}
			// Add alice again, then the logout route ends both.
			addAccount(t, b, "alice.test")
			if list, _ := accountsOf(t, b); len(list) != 2 {
				t.Fatalf("after adding alice again: %v", list)
			}
			if r := b.Do(http.MethodPost, "/api/logout", nil, sameOrigin(a, "application/x-www-form-urlencoded")); r.Status != http.StatusOK {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
				t.Fatalf("after logout: %d %s", r.Status, r.Body)
			}
			for _, did := range []string{alice, bob} {
				if list, _ := a.Manager.SessionsOf(context.Background(), did, nil); len(list) != 0 {
					t.Fatalf("%s's session survived the logout of the browser: %v", did, list)
				}
			}
			if st := a.as.Stats(); st.ActiveSessions != 0 {
				t.Fatalf("tokens left at the authorization server: %+v", st)
			}
		})
	}
}

// A plain login (no add) still replaces every account of the browser.
func TestAccountsPlainLoginReplacesAll(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test")
	b.Login("alice.test", "")
	if list, active := accountsOf(t, b); len(list) != 1 || active != a.alice.DID.String() {
		t.Fatalf("after a plain login: %v", list)
	}
	if list, _ := a.Manager.SessionsOf(context.Background(), a.bob.DID.String(), nil); len(list) != 0 {
		t.Fatalf("bob's session survived a plain login: %v", list)
	}
}

// Adding an account the browser holds already replaces its session: the
// device list still shows this browser once.
func TestAccountsReAddReplaces(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test")
	addAccount(t, b, "alice.test")
	list, active := accountsOf(t, b)
	if active != a.alice.DID.String() || strings.Join(list, " ") != a.alice.DID.String()+":true "+a.bob.DID.String()+":false" {
		t.Fatalf("after adding alice again: %v", list)
	}
	if devices, _ := a.Manager.SessionsOf(context.Background(), a.alice.DID.String(), nil); len(devices) != 1 {
		t.Fatalf("alice's devices: %v", devices)
	}
}

func TestAccountsLimit(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.MaxAccounts = 2 })
	a.as.CreateAccount(ginoauthtest.Account{Handle: "carol.test"})
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test")
	r := b.Get("/login?add=1&handle=carol.test")
	wantCode(t, r, http.StatusBadRequest, ginoauth.CodeInvalidRequest)
	if st := a.as.Stats(); st.PARs != 2 {
		t.Fatalf("a refused add must not reach the server: %+v", st)
	}
	if _, err := ginoauth.New(ginoauth.Config{MaxAccounts: 21}); err == nil {
		t.Fatal("MaxAccounts over the cap must be refused")
	}
}

// Ending one account's session from another device removes only that
// account from this browser.
func TestAccountsEndedElsewhere(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test") // bob active, alice the other

	// Alice, on another device, ends this browser's session of hers.
	other := a.NewBrowser()
	other.Login("alice.test", "")
	var ref string
	for _, s := range other.Get("/api/sessions").JSON(t)["sessions"].([]any) {
		if m := s.(map[string]any); m["current"] != true {
			ref = m["ref"].(string)
		}
	}
	if r := other.Do(http.MethodPost, "/api/sessions/end", strings.NewReader(`{"ref":"`+ref+`"}`), sameOrigin(a, "application/json")); r.Status != http.StatusOK {
		t.Fatalf("end from another device: %d %s", r.Status, r.Body)
	}
	if list, active := accountsOf(t, b); active != a.bob.DID.String() || len(list) != 1 {
		t.Fatalf("after alice's session ended elsewhere: %v", list)
	}
	// Now bob's (the active one) is ended elsewhere: the next request is
	// anonymous, and the browser holds no account.
	addAccount(t, b, "alice.test") // alice active, bob the other
	other2 := a.NewBrowser()
	other2.Login("alice.test", "")
	if _, err := a.Manager.EndAllSessions(context.Background(), a.alice.DID.String()); err != nil {
		t.Fatal(err)
	}
	if r := b.Get("/api/whoami"); r.Status != http.StatusUnauthorized {
		t.Fatalf("the active account ended elsewhere: %d %s", r.Status, r.Body)
	}
	if app, pds := whoami(t, b, nil); app != a.bob.DID.String() || pds != a.bob.DID.String() {
		t.Fatalf("the next account becomes active: app %s, PDS %s", app, pds)
	}
}

// doer sends a request: a Browser, or a rawClient.
type doer interface {
	Do(method, target string, body io.Reader, header http.Header) ginoauthtest.Response
}

// rawClient sends requests with exactly the headers given: no cookie jar,
// no redirects followed.
type rawClient struct {
	t    *testing.T
	base string
}

func (c rawClient) Do(method, target string, body io.Reader, header http.Header) ginoauthtest.Response {
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+target, body)
	if err != nil {
		c.t.Error(err)
		return ginoauthtest.Response{}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		c.t.Error(err)
		return ginoauthtest.Response{}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return ginoauthtest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// sealCookie seals values into a session cookie of a's, as only the app
// can: the shape checks below are about cookies the app itself might have
// sealed (an older configuration's limit, a bug), not forgeries.
func sealCookie(t *testing.T, a *testApp, values map[string]string) string {
	t.Helper()
	cs := a.Manager.CookieStore()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	s, _ := cs.New(req, "sid")
	for k, v := range values {
		s.Values[k] = v
	}
	s.Options.MaxAge = 3600
	w := httptest.NewRecorder()
	if err := cs.Save(req, w, s); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "sid" {
			return c.Value
		}
	}
	t.Fatal("no cookie sealed")
	return ""
}

// sessionIDs returns the raw session ids of a browser's cookie, the active
// one first, by reading the cookie the way the app does (its sealed
// layout), through a session of the CookieStore.
func sessionIDs(t testing.TB, a *testApp, b *ginoauthtest.Browser) (active string, others []string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(b.Cookie("sid"))
	s, err := a.Manager.CookieStore().New(req, "sid")
	if err != nil {
		t.Fatal(err)
	}
	active, _ = s.Values["sid"].(string)
	if o, _ := s.Values["o"].(string); o != "" {
		for _, e := range strings.Split(o, ",") {
			others = append(others, strings.SplitN(e, ".", 2)[0])
		}
	}
	return active, others
}

// Switching under concurrent requests: every answer (the app's and the
// PDS's) is the account of the cookie its request carried.
func TestAccountsConcurrentSwitchIsolation(t *testing.T) {
	for _, sc := range storages(t) {
		t.Run(sc.name, func(t *testing.T) {
			a := newTestApp(t, sc.open(t))
			b := a.NewBrowser()
			b.Login("alice.test", "")
			addAccount(t, b, "bob.test")
			bobActive := b.Cookie("sid").Value
			switchTo(t, a, b, a.alice.DID.String())
			aliceActive := b.Cookie("sid").Value
			cookies := map[string]string{a.alice.DID.String(): aliceActive, a.bob.DID.String(): bobActive}
			var wg sync.WaitGroup
			errs := make(chan string, 200)
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					want, other := a.alice.DID.String(), a.bob.DID.String()
					if i%2 == 1 {
						want, other = other, want
					}
					h := http.Header{"Cookie": {"sid=" + cookies[want]}}
					br := rawClient{t: t, base: a.Server.URL}
					for range 3 {
						if app, pds := whoami(t, br, h); app != want || pds != want {
							errs <- fmt.Sprintf("cookie of %s: app %s, PDS %s", want, app, pds)
						}
						// A switch in the same instant, from the same cookie, answers the target.
						sh := sameOrigin(a, "application/json")
						sh.Set("Cookie", "sid="+cookies[want])
						r := br.Do(http.MethodPost, "/api/accounts/switch", strings.NewReader(`{"did":"`+other+`"}`), sh)
						if r.Status != http.StatusOK || r.JSON(t)["did"] != other {
							errs <- fmt.Sprintf("switch from %s to %s: %d %s", want, other, r.Status, r.Body)
						}
						// A post made as one account lands in that account's repo.
						ph := http.Header{"Cookie": {"sid=" + cookies[want]}, "Content-Type": {"application/x-www-form-urlencoded"}}
						r = br.Do(http.MethodPost, "/api/post", strings.NewReader("text=hi"), ph)
						if r.Status != http.StatusOK || !strings.HasPrefix(r.JSON(t)["uri"].(string), "at://"+want+"/") {
							errs <- fmt.Sprintf("post as %s: %d %s", want, r.Status, r.Body)
						}
					}
				}()
			}
			// The real browser switches back and forth meanwhile.
			for i := range 10 {
				want := []string{a.bob.DID.String(), a.alice.DID.String()}[i%2]
				if r := switchTo(t, a, b, want); r.Status != http.StatusOK {
					t.Errorf("switch: %d %s", r.Status, r.Body)
				}
				if app, pds := whoami(t, b, nil); app != want || pds != want {
					t.Errorf("after switching to %s: app %s, PDS %s", want, app, pds)
				}
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}

// Each account keeps its own idle timeout: using the active one reseals the
// cookie with the others kept; an account unused past the timeout ends,
// and only it.
func TestAccountsOwnIdleTimeout(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.IdleTimeout = 30 * time.Minute })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test") // bob active, alice unused from now on
	a.Clock.Advance(20 * time.Minute)
	if app, _ := whoami(t, b, nil); app != a.bob.DID.String() {
		t.Fatalf("bob after 20 minutes: %q", app)
	}
	if list, _ := accountsOf(t, b); len(list) != 2 {
		t.Fatalf("the reseal of bob's activity dropped alice: %v", list)
	}
	a.Clock.Advance(15 * time.Minute) // alice idle 35 minutes, bob 15
	if app, _ := whoami(t, b, nil); app != a.bob.DID.String() {
		t.Fatalf("bob after 35 minutes: %q", app)
	}
	if list, _ := accountsOf(t, b); len(list) != 1 {
		t.Fatalf("alice, idle past the timeout, still listed: %v", list)
	}
	if list, _ := a.Manager.SessionsOf(context.Background(), a.alice.DID.String(), nil); len(list) != 0 {
		t.Fatalf("alice's idle session was not ended: %v", list)
	}
	if r := switchTo(t, a, b, a.alice.DID.String()); r.Status != http.StatusNotFound {
		t.Fatalf("switch to the idle account: %d %s", r.Status, r.Body)
	}
}

// Adding an account asks the authorization server to sign in afresh
// (prompt=login), with the handle typed as the hint; a step-up of the
// active account replaces only its session, the browser's other accounts
// stay.
func TestAccountsAddPromptAndStepUp(t *testing.T) {
	a := permApp(t)
	b := a.NewBrowser()
	b.Get(b.Consent(start(t, b, url.Values{"handle": {"alice.test"}, "scope": {noteCreate}}), "alice.test"))
	addAccount(t, b, "bob.test")
	if got := lastRequest(t, a.as); got.Prompt != "login" || got.LoginHint != "bob.test" {
		t.Fatalf("the added login asked for %+v", got)
	}
	switchTo(t, a, b, a.alice.DID.String())
	r := b.Get("/photos?album=1")
	if r.Status != http.StatusForbidden {
		t.Fatalf("/photos without its permission: %d %s", r.Status, r.Body)
	}
	up := b.Get(r.JSON(t)["upgrade"].(string))
	if cb := b.Get(b.Consent(up.Header.Get("Location"), "alice.test")); cb.Status != http.StatusFound {
		t.Fatalf("step-up callback: %d %s", cb.Status, cb.Body)
	}
	if r := b.Get("/photos"); r.Status != http.StatusOK {
		t.Fatalf("/photos after the step-up: %d", r.Status)
	}
	list, active := accountsOf(t, b)
	if active != a.alice.DID.String() || strings.Join(list, " ") != a.alice.DID.String()+":true "+a.bob.DID.String()+":false" {
		t.Fatalf("after alice's step-up: %v", list)
	}
	if devices, _ := a.Manager.SessionsOf(context.Background(), a.alice.DID.String(), nil); len(devices) != 1 {
		t.Fatalf("alice's devices after the step-up: %v", devices)
	}
}

// Storage faults while switching, signing out of all and adding answer
// 503 and lose nothing: the browser keeps its accounts, and a retry works.
func TestAccountsStorageFaults(t *testing.T) {
	a := newTestApp(t, nil)
	a.as.CreateAccount(ginoauthtest.Account{Handle: "carol.test"})
	b := a.NewBrowser()
	b.Login("alice.test", "")
	addAccount(t, b, "bob.test")
	want := a.bob.DID.String() + ":true " + a.alice.DID.String() + ":false"

	// The switch's read of the other account fails (the check's read of
	// the active one goes through).
	remove := a.Store.FailAfter(apptest.OpGet, "sess:", 1, 1)
	if r := switchTo(t, a, b, a.alice.DID.String()); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("switch with storage down: %d %s", r.Status, r.Body)
	}
	remove()
	if list, _ := accountsOf(t, b); strings.Join(list, " ") != want {
		t.Fatalf("after the failed switch: %v", list)
	}

	// An added login whose callback cannot read the browser's accounts:
	// 503, the new login's tokens revoked, the browser as it was.
	r := b.Get("/login?add=1&handle=carol.test")
	cb := b.Consent(r.Header.Get("Location"), "carol.test")
	remove = a.Store.FailAfter(apptest.OpGet, "sess:", 1, 1)
	if r := b.Get(cb); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("callback with storage down: %d %s", r.Status, r.Body)
	}
	remove()
	if list, _ := accountsOf(t, b); strings.Join(list, " ") != want {
		t.Fatalf("after the failed add: %v", list)
	}
	for _, s := range a.as.Sessions("carol.test") {
		if s.Active {
			t.Fatal("the failed add left carol's tokens live")
		}
	}

	// Log out of all, with the second account's delete failing: 503; the
	// retry ends the rest.
	remove = a.Store.FailAfter(apptest.OpDelete, "sess:", 1, 1)
	if r := b.Do(http.MethodPost, "/api/logout", nil, sameOrigin(a, "application/x-www-form-urlencoded")); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("logout with storage failing: %d %s", r.Status, r.Body)
	}
	remove()
	if r := b.Do(http.MethodPost, "/api/logout", nil, sameOrigin(a, "application/x-www-form-urlencoded")); r.Status != http.StatusOK {
		t.Fatalf("logout retried: %d %s", r.Status, r.Body)
	}
	for _, did := range []string{a.alice.DID.String(), a.bob.DID.String()} {
		if list, _ := a.Manager.SessionsOf(context.Background(), did, nil); len(list) != 0 {
			t.Fatalf("%s's session survived the retried logout: %v", did, list)
		}
	}
}
