package indigoclient_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// These tests drive the real flow (the prebuilt handlers, indigo's client,
// ginoauthtest's rotating refresh tokens with replay kill) and inject a
// fault at the worst moment of a token refresh. Each one failed before the
// fix it guards; the note on each says which.

// rig is one authorization server and the app instances that use it.
type rig struct {
	t    *testing.T
	as   *ginoauthtest.Server
	gate *apptest.Gate
	did  syntax.DID
}

func newRig(t *testing.T) *rig {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	return &rig{t: t, as: as, gate: &apptest.Gate{Base: as.HTTPClient().Transport}, did: alice.DID}
}

// app starts one instance on storage; every instance has its own
// LocalhostConfig (its own port), and so exercises one client_id for all.
func (r *rig) app(storage storage.Store, modify ...func(*apptest.Options)) *apptest.App {
	opts := apptest.Options{
		Storage:    storage,
		HTTPClient: &http.Client{Transport: r.gate},
		Directory:  r.as.Directory(),
		Consent:    r.as.Consent,
	}
	for _, m := range modify {
		m(&opts)
	}
	return apptest.New(r.t, opts)
}

// login logs alice in on a and returns her browser and OAuth session id.
func (r *rig) login(a *apptest.App) (*ginoauthtest.Browser, string) {
	b := a.NewBrowser()
	if resp := b.Login("alice.test", ""); resp.Status != http.StatusFound {
		r.t.Fatalf("login: %d %s", resp.Status, resp.Body)
	}
	return b, b.Get("/api/whoami").JSON(r.t)["oauthSessionID"].(string)
}

// stored returns the tokens a's storage holds for the session.
func (r *rig) stored(a *apptest.App, id string) (*oauth.ClientSessionData, error) {
	return a.Client.Store().GetSession(context.Background(), r.did, id)
}

// alive checks that the session is live at the server and that storage
// holds its current tokens: the login survives.
func (r *rig) alive(a *apptest.App, id string) {
	r.t.Helper()
	st := r.as.Stats()
	if st.ReplaysDetected != 0 || st.ActiveSessions != 1 {
		r.t.Fatalf("the login was lost: %+v", st)
	}
	data, err := r.stored(a, id)
	if err != nil {
		r.t.Fatalf("stored session: %v", err)
	}
	if !r.as.TokenActive(data.RefreshToken) {
		r.t.Fatal("storage holds a refresh token the server no longer accepts: the next refresh would be a replay")
	}
}

func getStatus(b *ginoauthtest.Browser, path string) int { return b.Get(path).Status }

// Defect 1. A request loads the session, another refreshes, then the first
// one's PDS call is answered use_dpop_nonce. indigo hands its whole (stale)
// session data to the save callback on a nonce update; writing it back put
// the spent refresh token into storage and the next refresh killed the
// session. Failed before the AuthStore stopped writing non-rotations.
func TestStaleNonceInFlightDoesNotRestoreSpentTokens(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			r := newRig(t)
			a := r.app(be.New(t))
			b, id := r.login(a)

			arrived, release := r.gate.Hold(apptest.IsPDSCall, false)
			inFlight := make(chan int)
			go func() { inFlight <- getStatus(b, "/api/pds-session") }()
			<-arrived // request X holds tokens A1/R1 and the current nonce
			r.as.RotateDPoPNonce()
			r.as.RotateDPoPNonce() // X's nonce is now one the server no longer accepts
			if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
				t.Fatalf("request Y's refresh: %d %s", resp.Status, resp.Body)
			}
			release()
			if st := <-inFlight; st != http.StatusOK {
				t.Fatalf("request X: %d", st)
			}
			r.alive(a, id)

			r.as.ExpireAccessTokens()
			if st := getStatus(b, "/api/pds-session"); st != http.StatusOK {
				t.Fatalf("the next refresh: %d (%+v)", st, r.as.Stats())
			}
			r.alive(a, id)
		})
	}
}

// Defect 2. The browser goes away after the server rotated the tokens and
// before they were saved. The request's own handler must still save them
// (not leave them to the background rescue). Failed while the refresh ran
// on the request's context.
func TestCancelledRequestKeepsRotatedTokens(t *testing.T) {
	r := newRig(t)
	cancelled, handled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	logs := &apptest.LogBuffer{}
	a := r.app(nil, func(o *apptest.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.Middleware = []gin.HandlerFunc{func(c *gin.Context) {
			if c.Request.URL.Path != "/api/refresh" {
				return
			}
			ctx := c.Request.Context()
			go func() { <-ctx.Done(); once.Do(func() { close(cancelled) }) }()
			c.Next()
			close(handled)
		}}
	})
	b, id := r.login(a)
	sid := b.Cookie("sid").Value

	arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.Server.URL+"/api/refresh", nil)
		req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived // the server has rotated the tokens; the answer is on its way
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the app never saw the request cancelled")
	}
	release()
	<-handled
	r.alive(a, id)
	if strings.Contains(logs.String(), "could not save rotated") {
		t.Fatalf("the cancelled request did not save the rotated tokens itself:\n%s", logs)
	}
	if st := getStatus(b, "/api/pds-session"); st != http.StatusOK {
		t.Fatalf("after the cancelled refresh: %d (%+v)", st, r.as.Stats())
	}
	r.alive(a, id)
}

// Defect 3a. Storage fails exactly at the save of rotated tokens, then
// recovers: the save is retried within the lease. Failed while a failed
// save dropped the tokens.
func TestFailedSaveOfRotatedTokensIsRetried(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			r := newRig(t)
			s1, s2 := be.Pair(t)
			one, two := r.app(s1), r.app(s2)
			b, id := r.login(one)
			one.Store.Fail(apptest.OpSet, "oauth:sess:", 3)
			if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
				t.Fatalf("refresh with a failing save: %d %s", resp.Status, resp.Body)
			}
			r.alive(one, id)
			r.as.ExpireAccessTokens()
			b2 := two.NewBrowser()
			b2.SetCookie(b.Cookie("sid"))
			if st := getStatus(b2, "/api/pds-session"); st != http.StatusOK {
				t.Fatalf("the other instance after the retried save: %d (%+v)", st, r.as.Stats())
			}
			r.alive(two, id)
		})
	}
}

// Defect 3b. Storage stays down past the save budget: the rotated tokens
// are the only copy of a live login, so they stay in memory (and serve this
// instance), and are saved as soon as storage answers. Failed while they
// were dropped.
func TestRotatedTokensOutliveAStorageOutage(t *testing.T) {
	r := newRig(t)
	s1, s2 := testdb.All()[1].Pair(t) // SQLite
	one, two := r.app(s1), r.app(s2)
	indigoclient.SetSaveBudget(one.Client.Client, 300*time.Millisecond)
	b, id := r.login(one)

	restore := one.Store.Fail(apptest.OpSet, "oauth:sess:", -1)
	if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
		t.Fatalf("refresh while token saves fail: %d %s", resp.Status, resp.Body)
	}
	if st := getStatus(b, "/api/pds-session"); st != http.StatusOK {
		t.Fatalf("this instance must go on with the tokens it could not save: %d", st)
	}
	restore()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := r.stored(one, id)
		if err == nil && r.as.TokenActive(data.RefreshToken) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated tokens were never saved after storage recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.as.ExpireAccessTokens()
	b2 := two.NewBrowser()
	b2.SetCookie(b.Cookie("sid"))
	if st := getStatus(b2, "/api/pds-session"); st != http.StatusOK {
		t.Fatalf("the other instance: %d (%+v)", st, r.as.Stats())
	}
	r.alive(two, id)
}

// Defect 3c. The release of the refresh lock fails once: it is retried, so
// the next refresh on any instance does not wait out the 30 s lease.
// Failed while the failed unlock was ignored.
func TestFailedUnlockIsRetried(t *testing.T) {
	r := newRig(t)
	store := testdb.All()[1].New(t) // SQLite, with a real lease Locker
	a := r.app(store)
	b, id := r.login(a)
	a.Store.Fail(apptest.OpUnlock, "oauth-refresh:", 1)
	if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.Status, resp.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := store.(storage.Locker).Lock(ctx, indigoclient.RefreshLockName(r.did.String(), id), time.Minute)
	if err != nil {
		t.Fatalf("the refresh lock is still held after its release failed once: %v", err)
	}
	_ = unlock(ctx)
}

// Defect 4. Logout while a refresh is in flight must revoke the tokens
// that refresh produced. Failed (the new tokens stayed live at the server)
// while logout revoked whatever it read first.
func TestLogoutRacingRefreshRevokesTheCurrentTokens(t *testing.T) {
	r := newRig(t)
	a := r.app(nil)
	b, _ := r.login(a)
	sid := b.Cookie("sid").Value

	arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
	refreshed := make(chan int)
	go func() { refreshed <- a.WithCookie(http.MethodPost, "/api/refresh", sid).Status }()
	<-arrived // rotated at the server, not yet saved
	loggedOut := make(chan int)
	go func() { loggedOut <- a.WithCookie(http.MethodPost, "/api/logout", sid).Status }()
	select {
	case <-loggedOut:
		t.Log("logout finished before the refresh could save") // the defect's schedule
		release()
	case <-time.After(300 * time.Millisecond):
		release()
		if st := <-loggedOut; st != http.StatusOK {
			t.Fatalf("logout: %d", st)
		}
	}
	<-refreshed
	if st := r.as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("tokens are still live at the server after logout: %+v", st)
	}
}

// Defect 4, as it was found: rounds of a refresh and a logout started
// together. No round may leave a session alive at the server.
func TestLogoutRacingRefreshRounds(t *testing.T) {
	r := newRig(t)
	a := r.app(testdb.All()[1].New(t))
	for round := range 25 {
		b, _ := r.login(a)
		sid := b.Cookie("sid").Value
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a.WithCookie(http.MethodPost, "/api/refresh", sid) }()
		go func() { defer wg.Done(); a.WithCookie(http.MethodPost, "/api/logout", sid) }()
		wg.Wait()
		if st := r.as.Stats(); st.ActiveSessions != 0 {
			t.Fatalf("round %d: a session is still live at the server after logout: %+v", round, st)
		}
	}
}

// Defect 5. Three instances, each with its own port and so its own
// callback URL, are one client: a login made on one is refreshed on
// another and revoked on the third. Failed while the port was part of the
// client_id ("issued to another client").
func TestInstancesOnDifferentPortsShareOneClient(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			r := newRig(t)
			s1, s2 := be.Pair(t)
			one, two, three := r.app(s1), r.app(s2), r.app(s1)
			if one.OAuthConfig.ClientID != two.OAuthConfig.ClientID || one.OAuthConfig.CallbackURL == two.OAuthConfig.CallbackURL {
				t.Fatalf("want one client_id and per-instance callbacks: %q %q", one.OAuthConfig.ClientID, two.OAuthConfig.ClientID)
			}
			b, _ := r.login(one)
			sid := b.Cookie("sid").Value
			r.as.ExpireAccessTokens()
			if resp := two.WithCookie(http.MethodGet, "/api/pds-session", sid); resp.Status != http.StatusOK {
				t.Fatalf("refresh on instance 2: %d %s", resp.Status, resp.Body)
			}
			if resp := three.WithCookie(http.MethodPost, "/api/logout", sid); resp.Status != http.StatusOK {
				t.Fatalf("logout on instance 3: %d", resp.Status)
			}
			st := r.as.Stats()
			if st.RefreshGrants != 1 || st.TokenErrors != 0 || st.SessionsRevoked != 1 || st.ActiveSessions != 0 {
				t.Fatalf("want one refresh, no refused token request, and the session revoked: %+v", st)
			}
		})
	}
}

// Defect 7. A session deleted while its refresh runs ends the login with
// a session error (401, not 502), and the tokens that refresh produced are
// revoked, since nobody holds them.
func TestSessionDeletedDuringRefresh(t *testing.T) {
	r := newRig(t)
	a := r.app(nil)
	b, id := r.login(a)
	arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
	done := make(chan ginoauthtest.Response)
	go func() { done <- b.PostForm("/api/refresh", nil) }()
	<-arrived
	if err := a.Client.Store().DeleteSession(context.Background(), r.did, id); err != nil {
		t.Fatal(err)
	}
	release()
	resp := <-done
	if resp.Status != http.StatusUnauthorized || !strings.Contains(string(resp.Body), "oauth_session_gone") {
		t.Fatalf("want 401 oauth_session_gone, got %d %s", resp.Status, resp.Body)
	}
	if st := r.as.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("the new tokens of a deleted session are still live: %+v", st)
	}
	if st := getStatus(b, "/api/session"); st != http.StatusUnauthorized {
		t.Fatalf("the device session must have ended: %d", st)
	}
}

// Defect 9. The request that learns the OAuth session is gone ends the
// device session itself: /api/session answers valid:false right after.
func TestRefusedRefreshEndsTheDeviceSessionAtOnce(t *testing.T) {
	r := newRig(t)
	a := r.app(nil)
	b, _ := r.login(a)
	if n := r.as.RevokeAll("alice.test"); n != 1 {
		t.Fatalf("revoked %d sessions", n)
	}
	if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusUnauthorized {
		t.Fatalf("refresh refused by the server: want 401, got %d %s", resp.Status, resp.Body)
	}
	if resp := b.Get("/api/session"); resp.Status != http.StatusUnauthorized {
		t.Fatalf("the very next session check must say logged out: %d %s", resp.Status, resp.Body)
	}
}

// indigo's typed client over the Manager's session gets the same refresh
// and the same end of the device session when the refresh is refused.
func TestTypedClientSharesTheRefreshPath(t *testing.T) {
	r := newRig(t)
	a := r.app(nil)
	b, id := r.login(a)
	r.as.ExpireAccessTokens()
	if st := getStatus(b, "/api/pds-session-typed"); st != http.StatusOK {
		t.Fatalf("typed call with an expired access token: %d", st)
	}
	r.alive(a, id)
	r.as.RevokeAll("alice.test")
	r.as.ExpireAccessTokens()
	if resp := b.Get("/api/pds-session-typed"); resp.Status != http.StatusUnauthorized {
		t.Fatalf("typed call after revocation: want 401, got %d %s", resp.Status, resp.Body)
	}
	if st := getStatus(b, "/api/session"); st != http.StatusUnauthorized {
		t.Fatalf("the device session must have ended: %d", st)
	}
}

// unackedStore is a replicated store in one process: a write it reports
// failed may still have reached the primary (readable at once) without
// reaching a replica (lost at the next failover), as redisstore's
// ErrNotReplicated. Only the session records of indigoclient are affected.
type unackedStore struct {
	*memstore.Store
	mu      sync.Mutex
	failing int               // the next writes to land unacknowledged
	pending map[string][]byte // landed on the primary only
}

func (s *unackedStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	v, ok := s.pending[key]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	return s.Store.Get(ctx, key)
}

func (s *unackedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing > 0 && strings.HasPrefix(key, "oauth:sess:") {
		s.failing--
		s.pending[key] = value
		return errors.New("not replicated")
	}
	delete(s.pending, key)
	return s.Store.Set(ctx, key, value, ttl)
}

// failover loses what only the old primary had.
func (s *unackedStore) failover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.pending)
}

// A save of rotated tokens reported failed but readable at once: its retry
// reads the new tokens back. Taking that read as saved lost the login at the
// next failover (the replicas had the spent token); found by the Redis
// Cluster failover harness. Failed while saveRotated returned early there.
func TestUnacknowledgedSaveIsWrittenAgain(t *testing.T) {
	r := newRig(t)
	store := &unackedStore{Store: memstore.New(), pending: map[string][]byte{}}
	a := r.app(store)
	b, id := r.login(a)
	store.mu.Lock()
	store.failing = 1
	store.mu.Unlock()
	if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
		t.Fatalf("refresh with an unacknowledged save: %d %s", resp.Status, resp.Body)
	}
	store.failover()
	r.alive(a, id)
}
