package ginoauth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// The session cache never lets a session through on the instance that
// ended it, and on the others for at most its TTL.
func TestSessionCacheBounds(t *testing.T) {
	const ttl = 30 * time.Second
	s1, s2 := testdb.All()[1].Pair(t)
	withCache := func(o *apptest.Options) {
		o.Configure = func(c *ginoauth.Config) { c.SessionCacheTTL = ttl }
	}
	one := newTestApp(t, s1, func(c *ginoauth.Config) { c.SessionCacheTTL = ttl })
	two := startApp(t, one.as, func(o *apptest.Options) { o.Storage = s2; withCache(o) })

	b := one.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value
	for _, a := range []*testApp{one, two} {
		if r := a.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusOK {
			t.Fatalf("logged in: %d", r.Status)
		}
	}
	one.Store.Down.Store(true) // a cached session check needs no storage
	if r := one.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusOK {
		t.Fatalf("a cached check must not read storage: %d", r.Status)
	}
	one.Store.Down.Store(false)

	// Logout through instance two: refused there at once.
	if r := two.WithCookie(http.MethodPost, "/api/logout", sid); r.Status != http.StatusOK {
		t.Fatalf("logout: %d", r.Status)
	}
	if r := two.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusUnauthorized {
		t.Fatalf("the instance that ended the session must refuse it at once: %d", r.Status)
	}
	// Instance one may still accept it from its cache, but no longer than
	// the TTL.
	if r := one.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusOK {
		t.Fatalf("within the TTL the other instance answers from its cache (or the cache is not used): %d", r.Status)
	}
	one.Clock.Advance(ttl)
	if r := one.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusUnauthorized {
		t.Fatalf("past the TTL the other instance must refuse the ended session: %d", r.Status)
	}

	// A session ended on the instance itself, from its cache: refused at once.
	c := one.NewBrowser()
	c.Login("alice.test", "")
	csid := c.Cookie("sid").Value
	one.WithCookie(http.MethodGet, "/api/whoami", csid) // cached
	c.PostForm("/api/logout", nil)
	if r := one.WithCookie(http.MethodGet, "/api/whoami", csid); r.Status != http.StatusUnauthorized {
		t.Fatalf("logged out on this instance: %d", r.Status)
	}
}
