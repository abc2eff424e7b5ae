package indigoclient_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// SoakEnv names the environment variable that turns the soak test on and
// says how long it runs, e.g. GINOAUTH_SOAK=60s.
const SoakEnv = "GINOAUTH_SOAK"

// TestSoakRefresh runs many sessions on three instances sharing one
// database (Postgres when its DSN is set, else SQLite) against a server
// whose DPoP nonces rotate every 250 ms and whose access tokens live one
// second, with a fifth of the requests cancelled at a random moment. It
// asserts that no refresh token was ever replayed and that every session
// is still logged in at the end, and prints the counts.
//
//	GINOAUTH_SOAK=60s go test -run TestSoakRefresh -v ./ginoauth/indigoclient/
func TestSoakRefresh(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv(SoakEnv))
	if err != nil || d <= 0 {
		t.Skip("soak test off: set " + SoakEnv + " to a duration, e.g. " + SoakEnv + "=60s")
	}
	const sessions, workers = 24, 16
	as := ginoauthtest.New(t, ginoauthtest.Options{NonceRotation: 250 * time.Millisecond, AccessTokenLifetime: time.Second})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	r := &rig{t: t, as: as, gate: &apptest.Gate{Base: as.HTTPClient().Transport}}
	be := testdb.All()[1]
	if os.Getenv(testdb.PostgresEnv) != "" {
		be = testdb.All()[2]
	}
	s1, s2 := be.Pair(t)
	logs := &apptest.LogBuffer{}
	withLogs := func(o *apptest.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		// Every session logs in from 127.0.0.1 at the start: room for all
		// of them under the login limit, whatever sessions is set to.
		o.Configure = func(c *ginoauth.Config) { c.RateLimits.LoginStarts = 2 * sessions }
	}
	apps := []*apptest.App{r.app(s1, withLogs), r.app(s2, withLogs), r.app(s1, withLogs)}
	defer func() {
		if t.Failed() {
			t.Logf("warnings and errors logged:\n%s", logs)
		}
	}()

	sids := make([]string, sessions)
	for i := range sids {
		b, _ := r.login(apps[i%len(apps)])
		sids[i] = b.Cookie("sid").Value
	}

	var requests, ok, cancelled, failed, unauthorized atomic.Int64
	var slowest maxDuration
	paths := []struct{ method, path string }{
		{http.MethodGet, "/api/pds-session"}, {http.MethodGet, "/api/pds-session"},
		{http.MethodPost, "/api/post"}, {http.MethodPost, "/api/refresh"},
	}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))) //nolint:gosec // test schedule, not a secret
			for time.Now().Before(stop) {
				sid := sids[rng.IntN(sessions)]
				app := apps[rng.IntN(len(apps))]
				p := paths[rng.IntN(len(paths))]
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(5) == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.IntN(30_000))*time.Microsecond)
				}
				req, _ := http.NewRequestWithContext(ctx, p.method, app.Server.URL+p.path, nil)
				req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
				requests.Add(1)
				began := time.Now()
				resp, err := http.DefaultClient.Do(req)
				slowest.record(time.Since(began))
				if el := time.Since(began); el > 5*time.Second {
					t.Logf("slow request: %v %s %s (err %v)", el.Round(time.Millisecond), p.method, p.path, err)
				}
				switch {
				case err != nil:
					cancelled.Add(1)
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				case resp.StatusCode == http.StatusUnauthorized:
					unauthorized.Add(1)
				default:
					failed.Add(1) // e.g. a token that expired again before its retry
				}
				if resp != nil {
					resp.Body.Close()
				}
				cancel()
			}
		}()
	}
	wg.Wait()

	// Every session must still work, on every instance, after its tokens
	// expire once more. Background saves may still be finishing.
	time.Sleep(500 * time.Millisecond)
	as.ExpireAccessTokens()
	lost := 0
	for i, sid := range sids {
		app := apps[i%len(apps)]
		if st := app.WithCookie(http.MethodGet, "/api/pds-session", sid).Status; st != http.StatusOK {
			lost++
			t.Logf("session %d: %d after the soak", i, st)
		}
	}
	st := as.Stats()
	t.Logf("soak on %s, %v: %d sessions, 3 instances, %d requests (%d ok, %d cancelled, %d other failures, %d unauthorized; slowest %v), %d refresh grants, %d nonce challenges, %d replays, %d lost sessions",
		be.Name, d, sessions, requests.Load(), ok.Load(), cancelled.Load(), failed.Load(), unauthorized.Load(), slowest.get().Round(time.Millisecond), st.RefreshGrants, st.NonceChallenges, st.ReplaysDetected, lost)
	if st.ReplaysDetected != 0 || lost != 0 || unauthorized.Load() != 0 || st.ActiveSessions != sessions {
		t.Fatalf("logins were lost: %d replays, %d lost sessions, %d unauthorized answers, %d of %d sessions active at the server",
			st.ReplaysDetected, lost, unauthorized.Load(), st.ActiveSessions, sessions)
	}
}

// maxDuration keeps the largest duration recorded.
type maxDuration struct{ ns atomic.Int64 }

func (m *maxDuration) record(d time.Duration) {
	for {
		cur := m.ns.Load()
		if int64(d) <= cur || m.ns.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

func (m *maxDuration) get() time.Duration { return time.Duration(m.ns.Load()) }
