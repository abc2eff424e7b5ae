package interop_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// gatedApp is the test app on the reference PDS with a Gate in front of
// its OAuth client's transport.
func gatedApp(t *testing.T, env *refpds.Env, modify ...func(*apptest.Options)) (*apptest.App, *apptest.Gate) {
	gate := &apptest.Gate{Base: env.HTTPClient().Transport}
	a := newApp(t, env, testdb.All()[1].New(t), append([]func(*apptest.Options){func(o *apptest.Options) {
		o.HTTPClient = &http.Client{Transport: gate}
	}}, modify...)...)
	return a, gate
}

// stillAlive forces one more refresh and checks at the reference server
// that the session lives: a spent refresh token written back to storage
// would make that refresh a replay, which ends the session there.
func stillAlive(t *testing.T, env *refpds.Env, a *apptest.App, b *ginoauthtest.Browser) {
	t.Helper()
	if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
		t.Fatalf("the next refresh failed (the login was lost): %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("PDS call after the next refresh: %d %s", r.Status, r.Body)
	}
	p, err := env.ProbeAccessToken(context.Background(), currentTokens(t, a, b))
	if err != nil || !p.OK() {
		t.Fatalf("the session must be alive at the reference server: %v %v", p, err)
	}
}

// A request holding the old tokens meets a DPoP nonce the PDS does not
// accept (here one it never issued; in real use, one older than its
// rotation period) after another request refreshed. Its nonce round must
// not write the spent tokens back.
func TestInteropStaleNonceInFlight(t *testing.T) {
	env := refpds.ForTest(t)
	a, gate := gatedApp(t, env)
	b := a.NewBrowser()
	if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	// The nonce this process will present to the PDS: one it never issued.
	cur := currentTokens(t, a, b)
	bogus := cur
	bogus.DPoPHostNonce = "bogus-nonce-the-pds-never-issued"
	if err := a.Client.Store().SaveSession(context.Background(), bogus); err != nil { // a nonce-only save
		t.Fatal(err)
	}

	arrived, release := gate.Hold(apptest.IsPDSCall, false)
	inFlight := make(chan int)
	go func() { inFlight <- b.Get("/api/pds-session").Status }()
	<-arrived // X holds the tokens of before the refresh, and the bogus nonce
	if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
		t.Fatalf("request Y's refresh: %d %s", r.Status, r.Body)
	}
	release()
	if st := <-inFlight; st != http.StatusOK {
		t.Fatalf("request X: %d", st)
	}
	if after := currentTokens(t, a, b); after.RefreshToken == cur.RefreshToken {
		t.Fatal("storage holds the spent refresh token again")
	}
	stillAlive(t, env, a, b)
}

// The browser goes away after the reference server rotated the tokens and
// before the app saved them.
func TestInteropCancelledRefresh(t *testing.T) {
	env := refpds.ForTest(t)
	cancelled, handled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var watch atomic.Bool // only the request the test cancels
	a, gate := gatedApp(t, env, func(o *apptest.Options) {
		o.Middleware = []gin.HandlerFunc{func(c *gin.Context) {
			if c.Request.URL.Path != "/api/refresh" || !watch.CompareAndSwap(true, false) {
				return
			}
			ctx := c.Request.Context()
			go func() { <-ctx.Done(); once.Do(func() { close(cancelled) }) }()
			c.Next()
			close(handled)
		}}
	})
	b := a.NewBrowser()
	if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	before := currentTokens(t, a, b)
	sid := b.Cookie("sid").Value

	arrived, release := gate.Hold(apptest.IsRefreshGrant, true)
	ctx, cancel := context.WithCancel(context.Background())
	watch.Store(true)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.Server.URL+"/api/refresh", nil)
		req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the app never saw the request cancelled")
	}
	release()
	<-handled
	after := currentTokens(t, a, b)
	if after.RefreshToken == before.RefreshToken {
		t.Fatal("the rotated tokens were dropped with the cancelled request")
	}
	probeRotated(t, env, a, after)
	stillAlive(t, env, a, b)
}

// probeRotated checks that the stored access token is the one the server
// now accepts.
func probeRotated(t *testing.T, env *refpds.Env, a *apptest.App, data oauth.ClientSessionData) {
	t.Helper()
	if p, err := env.ProbeAccessToken(context.Background(), data); err != nil || !p.OK() {
		t.Fatalf("the stored tokens are not the live ones: %v %v", p, err)
	}
}
