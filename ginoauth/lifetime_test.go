package ginoauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

const day = 24 * time.Hour

// lifeApps are instances of one app on one store and one authorization
// server, whose clocks (each Manager's and OAuth client's, and the
// server's) move together.
type lifeApps struct {
	t            *testing.T
	as           *ginoauthtest.Server
	apps         []*testApp
	events       *eventLog
	confidential bool
}

// newLifeApps starts n instances on the stores given (one per instance,
// sharing one backend), as a confidential client when confidential is set.
func newLifeApps(t *testing.T, stores []storage.Store, confidential bool, configure func(*ginoauth.Config)) *lifeApps {
	t.Helper()
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	la := &lifeApps{t: t, as: as, events: &eventLog{}, confidential: confidential}
	var client *oauth.ClientConfig
	if confidential {
		cfg := oauth.NewPublicConfig("https://app.test/oauth-client-metadata.json", "https://app.test/oauth/callback", apptest.Scopes)
		key, err := atcrypto.GeneratePrivateKeyP256()
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.SetClientSecret(key, "k1"); err != nil {
			t.Fatal(err)
		}
		md := cfg.ClientMetadata()
		jwks := cfg.PublicJWKS()
		md.JWKS = &jwks
		if err := as.RegisterClient(md); err != nil {
			t.Fatal(err)
		}
		client = &cfg
	}
	for _, store := range stores {
		la.apps = append(la.apps, startApp(t, as, func(o *apptest.Options) {
			o.Storage = store
			o.ClientConfig = client
			o.Configure = func(c *ginoauth.Config) {
				c.OnEvent = la.events.add
				if configure != nil {
					configure(c)
				}
			}
		}))
	}
	return la
}

// advance moves every clock forward by d.
func (la *lifeApps) advance(d time.Duration) {
	for _, a := range la.apps {
		a.Clock.Advance(d)
	}
	la.as.Advance(d)
}

// login logs alice in on the first instance and returns her browser.
func (la *lifeApps) login() *ginoauthtest.Browser {
	la.t.Helper()
	b := la.apps[0].NewBrowser()
	if !la.confidential {
		b.Login("alice.test", "/")
		return b
	}
	// The confidential client's redirect URI is https://app.test: the
	// browser brings the callback's query to the app where it listens.
	cb, err := url.Parse(b.Consent(b.StartLogin("alice.test", ""), "alice.test"))
	if err != nil {
		la.t.Fatal(err)
	}
	if r := b.Get(cb.RequestURI()); r.Status != http.StatusFound {
		la.t.Fatalf("callback: %d %s", r.Status, r.Body)
	}
	return b
}

// use is a visit: a page that calls the PDS (so the tokens are refreshed
// when they expired).
func use(t *testing.T, b *ginoauthtest.Browser, when string) {
	t.Helper()
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("%s: a visit that calls the PDS answered %d %s", when, r.Status, r.Body)
	}
}

// wantEnded checks that the session is over, with code at the guard and
// reason in the events.
func (la *lifeApps) wantEnded(b *ginoauthtest.Browser, code ginoauth.ErrorCode, reason ginoauth.EndReason, when string) {
	la.t.Helper()
	r := b.Get("/api/whoami")
	if r.Status != http.StatusUnauthorized || r.JSON(la.t)["code"] != string(code) {
		la.t.Fatalf("%s: want 401 %s, got %d %s", when, code, r.Status, r.Body)
	}
	la.eventually(func() bool { return la.events.count(ginoauth.EventSessionEnded, reason) == 1 }, "an event with reason "+string(reason))
}

// eventually waits (real time) for cond, which background work makes true.
func (la *lifeApps) eventually(cond func() bool, what string) {
	la.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			la.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storedExpiry is when alice's one device session expires, as its record
// says: read without using the session (a session check would extend it).
func (la *lifeApps) storedExpiry() time.Time {
	la.t.Helper()
	a := la.apps[0]
	list, err := a.Manager.SessionsOf(context.Background(), a.alice.DID.String(), nil)
	if err != nil || len(list) != 1 {
		la.t.Fatalf("sessions: %v %+v", err, list)
	}
	return list[0].ExpiresAt
}

// expiresAt is the session's expiry as the session route reports it.
func expiresAt(t *testing.T, b *ginoauthtest.Browser) time.Time {
	t.Helper()
	r := b.Get("/api/session")
	if r.Status != http.StatusOK {
		t.Fatalf("session: %d %s", r.Status, r.Body)
	}
	at, err := time.Parse(time.RFC3339Nano, r.JSON(t)["expiresAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// A public client's grant ends two weeks after the login however it is
// used, so the login does too: used daily, it lasts to that day and not
// one day less, and then ends with its own reason.
func TestPublicLoginLastsTwoWeeksFromLogin(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			la := newLifeApps(t, []storage.Store{be.New(t)}, false, nil)
			b := la.login()
			for d := 1; d <= 13; d++ {
				la.advance(day)
				use(t, b, fmt.Sprint("day ", d))
				if exp := expiresAt(t, b); exp.After(la.apps[0].Clock.Now().Add(14*day - time.Duration(d)*day)) {
					t.Fatalf("day %d: the session expires at %v, after its grant", d, exp)
				}
			}
			la.advance(day) // two weeks after the login
			la.wantEnded(b, ginoauth.CodeGrantExpired, ginoauth.EndGrantExpired, "day 14")
		})
	}
}

// A confidential client's grant lives as long as it is refreshed within
// three months (up to two years), and so does a login that is used: used
// weekly, it outlives a week and three months.
func TestConfidentialLoginLivesWhileUsed(t *testing.T) {
	la := newLifeApps(t, []storage.Store{testdb.SQLite(t)}, true, nil)
	b := la.login()
	first := expiresAt(t, b)
	if want := la.apps[0].Clock.Now().Add(90 * day); !first.Equal(want) {
		t.Fatalf("a confidential login expires at %v, want three months on (%v): its grant's refresh limit", first, want)
	}
	for week := 1; week <= 16; week++ { // 112 days
		la.advance(7 * day)
		use(t, b, "week")
	}
	if r := b.Get("/api/whoami"); r.Status != http.StatusOK {
		t.Fatalf("after 16 weeks of weekly use: %d %s", r.Status, r.Body)
	}
	la.eventually(func() bool { return expiresAt(t, b).After(first.Add(100 * day)) }, "the expiry to follow the refreshes")
	if st := la.as.Stats(); st.ReplaysDetected != 0 || st.RefreshGrants < 16 {
		t.Fatalf("server: %+v", st)
	}
}

// SessionTTL ends a login that goes unused for that long, while one in use
// slides on, and never past its grant.
func TestSessionTTLSlides(t *testing.T) {
	la := newLifeApps(t, []storage.Store{testdb.Memory(t)}, false, func(c *ginoauth.Config) { c.SessionTTL = 3 * day })
	b := la.login()
	for d := 1; d <= 6; d++ { // used every two days: past the three days
		la.advance(2 * day)
		use(t, b, "every other day")
	}
	la.advance(2*day + time.Hour) // past the grant's two weeks, before three unused days
	la.wantEnded(b, ginoauth.CodeGrantExpired, ginoauth.EndGrantExpired, "past the grant")

	idle := newLifeApps(t, []storage.Store{testdb.Memory(t)}, false, func(c *ginoauth.Config) { c.SessionTTL = 3 * day })
	b = idle.login()
	idle.advance(2 * day)
	use(t, b, "day 2")
	idle.advance(3 * day) // unused for three days
	idle.wantEnded(b, ginoauth.CodeSessionExpired, ginoauth.EndExpired, "unused for SessionTTL")
}

// An idle confidential login dies with its grant after three months, unless
// the grant is kept alive: then it lives on (four months here).
func TestKeepAliveKeepsAnIdleGrant(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		name := map[bool]string{false: "without", true: "with"}[keepAlive]
		t.Run(name, func(t *testing.T) {
			la := newLifeApps(t, []storage.Store{testdb.SQLite(t)}, true, func(c *ginoauth.Config) { c.KeepAlive = keepAlive })
			b := la.login()
			ctx := context.Background()
			la.advance(80 * day) // within two weeks of the refresh limit
			n := ginoauth.SweepKeepAlive(ctx, la.apps[0].Manager)
			if keepAlive && n != 1 || !keepAlive && n != 0 {
				t.Fatalf("sweep at day 80 refreshed %d grants", n)
			}
			if !keepAlive {
				la.advance(10*day + 12*time.Hour) // day 90.5: past the refresh limit
				la.wantEnded(b, ginoauth.CodeGrantExpired, ginoauth.EndGrantExpired, "day 90.5 without keep-alive")
				return
			}
			// The refresh extends the idle session in the background.
			la.eventually(func() bool { return la.storedExpiry().After(la.apps[0].Clock.Now().Add(60 * day)) }, "the kept-alive grant to extend the session")
			la.advance(40 * day) // day 120
			if r := b.Get("/api/whoami"); r.Status != http.StatusOK {
				t.Fatalf("day 120 with keep-alive: %d %s", r.Status, r.Body)
			}
			use(t, b, "day 120")
			if st := la.as.Stats(); st.ReplaysDetected != 0 {
				t.Fatalf("server: %+v", st)
			}
		})
	}
}

// Keep-alive on three instances sweeping at once, with the save of the
// rotated tokens failing once: one refresh grant, and the login lives.
func TestKeepAliveOnceAcrossInstancesWithAFaultAtTheSave(t *testing.T) {
	for _, be := range testdb.All()[1:] { // SQLite and Postgres: shared across processes
		t.Run(be.Name, func(t *testing.T) {
			s1, s2 := be.Pair(t)
			// Three instances: each its own Manager and OAuth client; the
			// second and third share a connection pool.
			stores := []storage.Store{s1, s2, s2}
			la := newLifeApps(t, stores, true, func(c *ginoauth.Config) { c.KeepAlive = true })
			b := la.login()
			la.advance(80 * day)
			before := la.as.Stats().RefreshGrants
			for _, a := range la.apps {
				a.Store.Fail(apptest.OpSet, "oauth:sess:", 1) // the first save of rotated tokens fails
			}
			ctx := context.Background()
			done := make(chan int, len(la.apps))
			for _, a := range la.apps {
				go func() { done <- ginoauth.SweepKeepAlive(ctx, a.Manager) }()
			}
			total := 0
			for range la.apps {
				total += <-done
			}
			if total != 1 {
				t.Fatalf("the instances refreshed %d grants in all, want 1", total)
			}
			if st := la.as.Stats(); st.RefreshGrants != before+1 || st.ReplaysDetected != 0 {
				t.Fatalf("server: %d refresh grants for one due grant (%+v)", st.RefreshGrants-before, st)
			}
			la.eventually(func() bool { return la.storedExpiry().After(la.apps[0].Clock.Now().Add(60 * day)) }, "the kept-alive grant to extend the session")
			la.advance(40 * day) // past the first refresh limit
			use(t, b, "day 120, after a keep-alive whose save failed once")
		})
	}
}

// Background access: a grant kept for background jobs outlives the
// browser's logout; without the opt-in it ends with it. Logout everywhere
// ends it.
func TestBackgroundAccess(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[keep], func(t *testing.T) {
			la := newLifeApps(t, []storage.Store{testdb.SQLite(t)}, false, func(c *ginoauth.Config) { c.BackgroundAccess = keep })
			a := la.apps[0]
			b := la.login()
			did := a.alice.DID.String()
			if r := b.PostForm("/api/logout", nil); r.Status != http.StatusOK {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			ctx := context.Background()
			sess, err := a.Manager.OAuthSessionForAccount(ctx, did)
			if !keep {
				if !isSessionCode(err, ginoauth.CodeNotLoggedIn) {
					t.Fatalf("without background access, after the last logout: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("with background access, after the last logout: %v", err)
			}
			la.advance(2 * time.Hour) // the access token expired: the job refreshes
			if err := getSession(ctx, sess); err != nil {
				t.Fatalf("background call: %v", err)
			}
			if n, err := a.Manager.EndAllSessions(ctx, did); err != nil || n != 0 {
				t.Fatalf("end everywhere: %d %v", n, err)
			}
			if _, err := a.Manager.OAuthSessionForAccount(ctx, did); !isSessionCode(err, ginoauth.CodeNotLoggedIn) {
				t.Fatalf("after logout everywhere: %v", err)
			}
			if st := la.as.Stats(); st.ActiveSessions != 0 {
				t.Fatalf("the kept grant must be revoked at the server: %+v", st)
			}
		})
	}
}

// getSession calls com.atproto.server.getSession through sess.
func getSession(ctx context.Context, sess interface {
	Do(*http.Request) (*http.Response, error)
	HostURL() string
}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sess.HostURL()+"/xrpc/com.atproto.server.getSession", nil)
	if err != nil {
		return err
	}
	resp, err := sess.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// writeCounter counts writes to device session records ("sess:" keys) by
// any method, keeping the store's Swapper (the extension's compare-and-swap)
// and the other capabilities the app uses.
type writeCounter struct {
	storage.Store
	mu     sync.Mutex
	writes map[string]int // by operation
}

func (w *writeCounter) note(op, key string) {
	if strings.HasPrefix(key, "sess:") {
		w.mu.Lock()
		w.writes[op]++
		w.mu.Unlock()
	}
}

func (w *writeCounter) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.writes {
		n += v
	}
	return n
}

func (w *writeCounter) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	w.note("set", k)
	return w.Store.Set(ctx, k, v, ttl)
}

func (w *writeCounter) Swap(ctx context.Context, k string, old, new []byte, ttl time.Duration) (bool, error) {
	w.note("swap", k)
	return w.Store.(storage.Swapper).Swap(ctx, k, old, new, ttl)
}

func (w *writeCounter) Take(ctx context.Context, k string) ([]byte, error) {
	return w.Store.(storage.Taker).Take(ctx, k)
}

func (w *writeCounter) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	return w.Store.(storage.Locker).Lock(ctx, name, ttl)
}

func (w *writeCounter) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	return w.Store.(storage.Indexer).AddMember(ctx, set, member, ttl)
}

func (w *writeCounter) RemoveMember(ctx context.Context, set, member string) error {
	return w.Store.(storage.Indexer).RemoveMember(ctx, set, member)
}

func (w *writeCounter) Members(ctx context.Context, set string) ([]string, error) {
	return w.Store.(storage.Indexer).Members(ctx, set)
}

// The write budget of sliding sessions: a browser checking its session
// every minute for six hours, round robin over three instances, costs at
// most one write of its record an hour (plus the login's), however many
// requests it makes, and the session slides on.
func TestSlidingCostsOneWriteAnHour(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			counted := &writeCounter{Store: be.New(t), writes: map[string]int{}}
			la := newLifeApps(t, []storage.Store{counted, counted, counted}, false, func(c *ginoauth.Config) { c.SessionTTL = 3 * day })
			b := la.login()
			before := expiresAt(t, b)
			atLogin := counted.total()
			const hours, perHour = 6, 60
			for i := range hours * perHour {
				la.advance(time.Minute)
				if r := b.Get(la.apps[i%len(la.apps)].Server.URL + "/api/whoami"); r.Status != http.StatusOK {
					t.Fatalf("check %d: %d %s", i, r.Status, r.Body)
				}
			}
			writes := counted.total() - atLogin
			t.Logf("%s: %d session checks over %d hours on 3 instances: %d writes of the session record (%v)", be.Name, hours*perHour, hours, writes, counted.writes)
			if writes > hours {
				t.Errorf("%d writes of the session record in %d hours, want at most one an hour", writes, hours)
			}
			if writes < hours-1 {
				t.Errorf("%d writes in %d hours: the session did not slide", writes, hours)
			}
			if after := expiresAt(t, b); !after.After(before.Add((hours - 1) * time.Hour)) {
				t.Errorf("expiry moved from %v to %v in %d hours of use", before, after, hours)
			}
		})
	}
}
