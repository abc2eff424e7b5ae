package interop_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// TestInteropConcurrentRefreshAcrossInstances: two instances of one app share
// a database; many requests on both find the stored access token dead at
// once. The reference PDS deletes the whole session if a refresh token is
// spent twice ("Refresh token replayed"), so the session survives only if
// exactly one request refreshed and the others used its tokens.
func TestInteropConcurrentRefreshAcrossInstances(t *testing.T) {
	env := refpds.ForTest(t)
	for _, be := range []testdb.Backend{testdb.All()[1], testdb.All()[2]} { // SQLite, Postgres
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			s1, s2 := be.Pair(t)
			one := newApp(t, env, s1)
			two := newApp(t, env, s2, func(o *apptest.Options) { o.ClientConfig = one.OAuthConfig })
			b := one.NewBrowser()
			if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
				t.Fatalf("login: %d %s", r.Status, r.Body)
			}
			sid := b.Cookie("sid").Value

			// Make the stored access token one the server has killed (the
			// reference server kills the old access token at refresh), while
			// the stored refresh token stays the current one: as if the
			// access token had expired.
			dead := currentTokens(t, one, b).AccessToken
			if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
				t.Fatalf("refresh: %d %s", r.Status, r.Body)
			}
			stale := currentTokens(t, one, b)
			one.EditStoredOAuthSession(stale.AccountDID.String(), stale.SessionID, func(d map[string]any) { d["access_token"] = dead })

			var wg sync.WaitGroup
			statuses := make([]int, 8)
			for i := range statuses {
				base := one.Server.URL
				if i%2 == 1 {
					base = two.Server.URL
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodGet, base+"/api/pds-session", nil)
					req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
					if resp, err := http.DefaultClient.Do(req); err == nil {
						statuses[i] = resp.StatusCode
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			for i, st := range statuses {
				if st != http.StatusOK {
					t.Errorf("request %d on instance %d: status %d", i, i%2+1, st)
				}
			}
			after := currentTokens(t, one, b)
			if after.AccessToken == dead || after.RefreshToken == stale.RefreshToken {
				t.Fatal("the tokens were not rotated")
			}
			if p, err := env.ProbeAccessToken(ctx, after); err != nil || !p.OK() {
				t.Fatalf("the session must still be alive at the reference server: %v %v", p, err)
			}
		})
	}
}
