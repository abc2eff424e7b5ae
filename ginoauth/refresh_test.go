package ginoauth_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// getStatus sends one GET with the session cookie; safe in goroutines.
func getStatus(baseURL, path, sid string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, baseURL+path, nil)
	if err != nil {
		return 0, err
	}
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Many requests, on two app instances sharing one database, find the access
// token expired at once. Refresh tokens are single use and a replay kills the
// session, so exactly one refresh grant may happen, and every request must
// succeed with the rotated tokens.
func TestConcurrentRefreshAcrossInstances(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			s1, s2 := be.Pair(t)
			one := newTestApp(t, s1)
			two := startApp(t, one.as, func(o *apptest.Options) {
				o.Storage = s2
				o.ClientConfig = one.OAuthConfig // one app, one client_id, two instances
			})
			b := one.NewBrowser()
			b.Login("alice.test", "")
			sid := b.Cookie("sid").Value

			for round := 0; round < 3; round++ {
				one.as.ExpireAccessTokens()
				var wg sync.WaitGroup
				var failures atomic.Int32
				for i := 0; i < 12; i++ {
					base := one.Server.URL
					if i%2 == 1 {
						base = two.Server.URL
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						status, err := getStatus(base, "/api/pds-session", sid)
						if err != nil || status != http.StatusOK {
							failures.Add(1)
							t.Logf("request %d: %d %v", i, status, err)
						}
					}()
				}
				wg.Wait()
				st := one.as.Stats()
				if failures.Load() != 0 || st.RefreshGrants != round+1 || st.ReplaysDetected != 0 {
					t.Fatalf("round %d: %d failed requests, stats %+v; want no failures, exactly one refresh per expiry and no replay",
						round, failures.Load(), st)
				}
			}
		})
	}
}

// A refresh the authorization server refuses for good (here: the user
// revoked the app) ends the login: the PDS call answers 401 (not 502), and
// the local session is gone on the next use.
func TestRefusedRefreshEndsTheLogin(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	if n := a.as.RevokeAll("alice.test"); n != 1 {
		t.Fatalf("want one session revoked at the server, got %d", n)
	}
	r := b.Get("/api/pds-session")
	if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "oauth_session_gone") {
		t.Fatalf("a refused refresh must surface as a session error (401), got %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/pds-session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("next call: %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("the local session must have ended: %d %s", r.Status, r.Body)
	}
}

// tokenOutage fails every request to the token endpoint while on: the
// authorization server is unreachable, the PDS is fine.
type tokenOutage struct {
	base http.RoundTripper
	on   atomic.Bool
}

func (o *tokenOutage) RoundTrip(req *http.Request) (*http.Response, error) {
	if o.on.Load() && strings.HasSuffix(req.URL.Path, "/oauth/token") {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errors.New("connection refused (injected)")
	}
	return o.base.RoundTrip(req)
}

// A refresh that fails on the network logs nobody out and does not pretend
// to succeed; once the server is back, one refresh repairs everything.
func TestRefreshNetworkFailureKeepsTheLogin(t *testing.T) {
	a := newTestApp(t, nil)
	outage := &tokenOutage{base: a.as.HTTPClient().Transport}
	flaky := startApp(t, a.as, func(o *apptest.Options) {
		o.HTTPClient = &http.Client{Transport: outage}
	})
	b := flaky.NewBrowser()
	b.Login("alice.test", "")
	outage.on.Store(true)
	a.as.ExpireAccessTokens()
	if r := b.Get("/api/pds-session"); r.Status != http.StatusBadGateway {
		t.Fatalf("refresh during an outage: want 502, got %d %s", r.Status, r.Body)
	}
	if r := b.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatalf("a network failure must not log the user out: %d", r.Status)
	}
	outage.on.Store(false)
	if r := b.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("after the outage: %d %s", r.Status, r.Body)
	}
	if st := a.as.Stats(); st.RefreshGrants != 1 || st.ReplaysDetected != 0 {
		t.Fatalf("want one refresh after the outage, got %+v", st)
	}
}
