package ginoauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// deviceApps starts two instances of one app on one shared store, with
// the native-app flow on; events of both are collected.
func deviceApps(t *testing.T, be testdb.Backend, events *eventLog) (*testApp, *testApp) {
	t.Helper()
	s1, s2 := be.Pair(t)
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	as.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	conf := func(store storage.Store) func(o *apptest.Options) {
		return func(o *apptest.Options) {
			o.Storage = store
			o.Configure = func(c *ginoauth.Config) {
				c.Mobile.RedirectURIs = []string{appRedirect}
				if events != nil {
					c.OnEvent = events.add
				}
			}
		}
	}
	return startApp(t, as, conf(s1)), startApp(t, as, conf(s2))
}

type eventLog struct {
	mu sync.Mutex
	ev []ginoauth.Event
}

func (l *eventLog) add(e ginoauth.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
}

func (l *eventLog) count(typ ginoauth.EventType, reason ginoauth.EndReason) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Type == typ && (reason == "" || e.Reason == reason) {
			n++
		}
	}
	return n
}

func listSessions(t *testing.T, b *ginoauthtest.Browser) []map[string]any {
	t.Helper()
	r := b.Get("/api/sessions")
	if r.Status != http.StatusOK {
		t.Fatalf("/api/sessions: %d %s", r.Status, r.Body)
	}
	var out []map[string]any
	for _, s := range r.JSON(t)["sessions"].([]any) {
		out = append(out, s.(map[string]any))
	}
	return out
}

func onInstance(sid string, a *testApp, path string) int {
	return a.WithCookie(http.MethodGet, path, sid).Status
}

// Two browsers and a native app, logged in as one account on two
// instances: the list shows three; ending one ends it on both instances at
// once and leaves the others; ending everything revokes every token.
func TestDevicesListAndEnd(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			events := &eventLog{}
			one, two := deviceApps(t, be, events)
			laptop, phone := one.NewBrowser(), two.NewBrowser()
			laptop.Do(http.MethodGet, "/login?handle=alice.test", nil, http.Header{"User-Agent": {"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0"}})
			laptop.Login("alice.test", "")
			phone.Login("alice.test", "")
			app := newNativeApp(t, one)
			token := app.login("alice.test")
			laptopSid, phoneSid := laptop.Cookie("sid").Value, phone.Cookie("sid").Value

			list := listSessions(t, laptop)
			if len(list) != 3 {
				t.Fatalf("want three sessions, got %v", list)
			}
			var phoneRef string
			kinds := map[string]int{}
			current := 0
			for _, s := range list {
				kinds[s["kind"].(string)]++
				if s["current"] == true {
					current++
				}
				if s["ip"] != nil {
					t.Fatal("no IP address without Config.RecordIP")
				}
				if s["kind"] == "web" && s["current"] == false {
					phoneRef = s["ref"].(string)
				}
			}
			if kinds["web"] != 2 || kinds["mobile"] != 1 || current != 1 || phoneRef == "" {
				t.Fatalf("list: %v", list)
			}

			if r := laptop.PostForm("/api/sessions/end", url.Values{"ref": {phoneRef}}); r.Status != http.StatusOK {
				t.Fatalf("end one: %d %s", r.Status, r.Body)
			}
			for _, inst := range []*testApp{one, two} {
				if st := onInstance(phoneSid, inst, "/api/session"); st != http.StatusUnauthorized {
					t.Fatalf("the ended session on an instance: %d", st)
				}
				if st := onInstance(laptopSid, inst, "/api/session"); st != http.StatusOK {
					t.Fatalf("the laptop must stay logged in: %d", st)
				}
			}
			if st, _, _ := app.call(http.MethodGet, "/api/pds-session", nil, token); st != http.StatusOK {
				t.Fatalf("the app must stay logged in: %d", st)
			}
			if r := laptop.PostForm("/api/sessions/end", url.Values{"ref": {"not-a-ref"}}); r.Status != http.StatusNotFound {
				t.Fatalf("an unknown ref: %d", r.Status)
			}

			if r := laptop.PostForm("/api/sessions/end-all", nil); r.Status != http.StatusOK || r.JSON(t)["ended"] != float64(2) {
				t.Fatalf("end everywhere: %d %s", r.Status, r.Body)
			}
			if st := onInstance(laptopSid, two, "/api/session"); st != http.StatusUnauthorized {
				t.Fatalf("after end-all: %d", st)
			}
			if st, _, _ := app.call(http.MethodGet, "/api/whoami", nil, token); st != http.StatusUnauthorized {
				t.Fatalf("the app after end-all: %d", st)
			}
			if st := one.as.Stats(); st.ActiveSessions != 0 || st.SessionsRevoked != 3 {
				t.Fatalf("every ended session's tokens must be revoked: %+v", st)
			}
			waitFor(t, func() bool {
				return events.count(ginoauth.EventLogin, "") == 3 && events.count(ginoauth.EventSessionEnded, ginoauth.EndByUser) == 1 &&
					events.count(ginoauth.EventSessionEnded, ginoauth.EndEverywhere) == 2
			})
		})
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Concurrent logins on two instances all appear in the index, and ended
// ones never do.
func TestDeviceIndexUnderConcurrency(t *testing.T) {
	for _, be := range testdb.All()[1:] {
		t.Run(be.Name, func(t *testing.T) {
			one, two := deviceApps(t, be, nil)
			var wg sync.WaitGroup
			browsers := make([]*ginoauthtest.Browser, 10)
			for i := range browsers {
				inst := one
				if i%2 == 1 {
					inst = two
				}
				browsers[i] = inst.NewBrowser()
				wg.Add(1)
				go func() {
					defer wg.Done()
					browsers[i].Login("alice.test", "")
				}()
			}
			wg.Wait()
			if n := len(listSessions(t, browsers[0])); n != 10 {
				t.Fatalf("concurrent logins on two instances: %d listed, want 10", n)
			}
			for i := 1; i < 10; i += 2 {
				browsers[i].PostForm("/api/logout", nil)
			}
			list := listSessions(t, browsers[0])
			if len(list) != 5 {
				t.Fatalf("after five logouts: %d listed", len(list))
			}
			// A session deleted behind the index's back is not listed either.
			list = listSessions(t, browsers[2])
			if len(list) != 5 {
				t.Fatalf("%d", len(list))
			}
		})
	}
}

// A background job reaches the account's PDS after the request that made
// the login is long gone, through the same refresh path.
func TestOAuthSessionForAccount(t *testing.T) {
	one, _ := deviceApps(t, testdb.All()[1], nil)
	ctx := context.Background()
	if _, err := one.Manager.OAuthSessionForAccount(ctx, one.alice.DID.String()); !isSessionCode(err, ginoauth.CodeNotLoggedIn) {
		t.Fatalf("an account without sessions: %v", err)
	}
	b := one.NewBrowser()
	b.Login("alice.test", "")
	one.as.ExpireAccessTokens()
	sess, err := one.Manager.OAuthSessionForAccount(ctx, one.alice.DID.String())
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Handle string }
	if err := indigoclient.APIClient(sess).Get(ctx, "com.atproto.server.getSession", nil, &out); err != nil || out.Handle != "alice.test" {
		t.Fatalf("background call: %v %+v", err, out)
	}
	if st := one.as.Stats(); st.RefreshGrants != 1 || st.ReplaysDetected != 0 {
		t.Fatalf("the background call must refresh once: %+v", st)
	}
	// Revoked at the server: the background call ends the device session.
	one.as.RevokeAll("alice.test")
	one.as.ExpireAccessTokens()
	sess, err = one.Manager.OAuthSessionForAccount(ctx, one.alice.DID.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := indigoclient.APIClient(sess).Get(ctx, "com.atproto.server.getSession", nil, nil); !isSessionCode(err, ginoauth.CodeOAuthSessionGone) {
		t.Fatalf("after revocation: %v", err)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("the device session must have ended: %d", r.Status)
	}
}

func isSessionCode(err error, code ginoauth.ErrorCode) bool {
	var se *ginoauth.SessionError
	return errors.As(err, &se) && se.Code == code
}

// A slow or panicking hook cannot break or slow a login.
func TestHooksCannotBreakALogin(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.OnEvent = func(e ginoauth.Event) {
			if calls.Add(1) == 1 {
				<-release // a hook that hangs
			}
			panic("a broken hook")
		}
	})
	for range 3 {
		b := a.NewBrowser()
		done := make(chan struct{})
		go func() { b.Login("alice.test", ""); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a hanging hook held up a login")
		}
		if r := b.Get("/api/session"); r.Status != http.StatusOK {
			t.Fatalf("login with a broken hook: %d", r.Status)
		}
	}
	close(release)
	waitFor(t, func() bool { return calls.Load() == 3 })
}

// Without an Indexer the device features say what is missing, and their
// routes are not mounted.
func TestDevicesNeedAnIndexer(t *testing.T) {
	store := noIndex{testdb.Memory(t)}
	client := indigoclient.New(oauth.NewPublicConfig("https://app.example/m.json", "https://app.example/oauth/callback", []string{"atproto"}), store, indigoclient.Options{})
	defer client.Close()
	mgr, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32), BaseURL: "https://app.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.SessionsOf(context.Background(), "did:plc:abc", nil); !errors.Is(err, ginoauth.ErrNoIndex) || !strings.Contains(err.Error(), "storage.Indexer") {
		t.Fatalf("want ErrNoIndex naming the capability, got %v", err)
	}
	r := gin.New()
	mgr.Mount(r)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/sessions", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("the device routes must not be mounted without an index: %d", w.Code)
	}
}

// noIndex is a store without an Indexer.
type noIndex struct{ storage.Store }
