package ginoauth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// A database that stalls (blackholed: it neither answers nor refuses) must
// not hold requests for as long as the stall lasts: each storage operation
// has a deadline, and a request that hits it answers 503. When the database
// answers again, the session is still there.
func TestStalledStorageAnswers503(t *testing.T) {
	store, proxy := testdb.PostgresThrough(t)
	a := newTestApp(t, store, func(c *ginoauth.Config) { c.StorageTimeout = 300 * time.Millisecond })
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value

	proxy.Stall()
	client := &http.Client{Timeout: 30 * time.Second} // only to end the test if the library hangs
	for _, path := range []string{"/api/session", "/dashboard"} {
		req, _ := http.NewRequest(http.MethodGet, a.Server.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s during a stall: %v (the request hung)", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s during a stall: want 503, got %d", path, resp.StatusCode)
		}
	}
	proxy.Resume()
	if r := b.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatalf("after the stall: %d %s", r.Status, r.Body)
	}
}
