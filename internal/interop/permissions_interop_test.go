package interop_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// A login with granular permissions at the reference PDS: the grant is the
// permission asked for, a write it covers succeeds, a write outside it is
// refused by the PDS, and RequireScopes agrees with the PDS.
func TestInteropGranularScopes(t *testing.T) {
	env := refpds.ForTest(t)
	const note = "repo:com.example.ginoauth.note?action=create"
	a := newApp(t, env, testdb.All()[1].New(t), func(o *apptest.Options) {
		o.Scopes = []string{"atproto", note}
		o.Routes = func(r *gin.Engine, m *ginoauth.Manager) {
			r.POST("/note", ginoauth.RequireScopes(m, note), func(c *gin.Context) {
				sess, err := m.OAuthSession(c)
				if err != nil {
					c.String(http.StatusUnauthorized, err.Error())
					return
				}
				in := map[string]any{"repo": sess.DID(), "collection": "com.example.ginoauth.note",
					"record": map[string]any{"$type": "com.example.ginoauth.note", "text": "hi", "createdAt": time.Now().UTC().Format(time.RFC3339)}}
				var out struct{ URI string }
				if err := indigoclient.APIClient(sess).Post(c.Request.Context(), "com.atproto.repo.createRecord", in, &out); err != nil {
					c.String(http.StatusBadGateway, err.Error())
					return
				}
				c.String(http.StatusOK, out.URI)
			})
			r.GET("/post-allowed", ginoauth.RequireScopes(m, "repo:app.bsky.feed.post?action=create"), func(c *gin.Context) { c.String(http.StatusOK, "ok") })
		}
	})
	b := a.NewBrowser()
	if r := b.Login("alice.test", ""); r.Status != http.StatusFound {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	s := b.Get("/api/session").JSON(t)
	var scopes []string
	for _, v := range s["scopes"].([]any) {
		scopes = append(scopes, v.(string))
	}
	if !slices.Contains(scopes, note) || !slices.Contains(scopes, "atproto") {
		t.Fatalf("granted scopes: %v", scopes)
	}
	if r := b.PostForm("/note", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "/com.example.ginoauth.note/") {
		t.Fatalf("a write the grant covers: %d %s", r.Status, r.Body)
	}
	r := b.PostForm("/api/post", url.Values{"text": {"outside the grant"}})
	if r.Status == http.StatusOK || !strings.Contains(string(r.Body), "403") {
		t.Fatalf("the reference PDS must refuse a write outside the grant: %d %s", r.Status, r.Body)
	}
	if r := b.Get("/post-allowed"); r.Status != http.StatusForbidden {
		t.Fatalf("RequireScopes must refuse what the PDS refuses: %d %s", r.Status, r.Body)
	}
}

// A login that starts at the server, without a handle.
func TestInteropStartAtServer(t *testing.T) {
	env := refpds.ForTest(t)
	a := newApp(t, env, testdb.All()[0].New(t))
	b := a.NewBrowser()
	r := b.PostForm("/login", url.Values{"server": {strings.TrimPrefix(env.Issuer, "https://")}})
	if r.Status != http.StatusFound {
		t.Fatalf("/login with a server: %d %s", r.Status, r.Body)
	}
	if cb := b.Get(b.Consent(r.Header.Get("Location"), "alice.test")); cb.Status != http.StatusFound {
		t.Fatalf("callback: %d %s", cb.Status, cb.Body)
	}
	acct, _ := env.Account("alice")
	if who := b.Get("/api/whoami").JSON(t); who["did"] != acct.DID.String() {
		t.Fatalf("logged in as %v", who)
	}
}
