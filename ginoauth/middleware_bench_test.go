package ginoauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// BenchmarkAuthenticatedRequest is what every logged-in request costs in the
// library: decoding the sealed cookie, one storage read of the session
// record, and the user in the Gin context, served in process by Gin. The
// bare case is the same route without the middleware. The +5-accounts
// cases carry a cookie with five accounts of one browser (four besides the
// active one): still one storage read, of the active account.
//
//	go test -run '^$' -bench AuthenticatedRequest -benchmem ./ginoauth/
func BenchmarkAuthenticatedRequest(b *testing.B) {
	// Every case answers the same JSON as the benchmark harness's rows.
	hello := func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		if u == nil {
			c.String(http.StatusOK, "anonymous")
			return
		}
		c.JSON(http.StatusOK, didAnswer{DID: u.DID})
	}
	b.Run("bare-gin", func(b *testing.B) {
		r := gin.New()
		r.GET("/me", func(c *gin.Context) { c.JSON(http.StatusOK, didAnswer{DID: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"}) })
		serve(b, r, "")
	})
	for _, tc := range []struct {
		name    string
		backend testdb.Backend
		cache   bool
		bearer  bool
		five    bool // five accounts in the cookie
	}{
		{"memory", testdb.All()[0], false, false, false},
		{"memory+5-accounts", testdb.All()[0], false, false, true},
		{"memory+cache", testdb.All()[0], true, false, false},
		{"memory+bearer", testdb.All()[0], false, true, false},
		{"sqlite", testdb.All()[1], false, false, false},
		{"sqlite+5-accounts", testdb.All()[1], false, false, true},
		{"sqlite+bearer", testdb.All()[1], false, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := newTestApp(b, tc.backend.New(b), func(c *ginoauth.Config) {
				c.Mobile.RedirectURIs = []string{appRedirect}
				if tc.cache {
					c.SessionCacheTTL = 5 * time.Second
				}
			})
			var credential string
			if tc.bearer {
				credential = "Bearer " + newNativeApp(b, a).login("alice.test")
			} else {
				br := a.NewBrowser()
				br.Login("alice.test", "")
				if tc.five {
					for _, h := range []string{"bob.test", "carol.test", "dave.test", "erin.test"} {
						if h != "bob.test" {
							a.as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(h)})
						}
						addAccount(b, br, h)
					}
					if _, others := sessionIDs(b, a, br); len(others) != 4 {
						b.Fatalf("want five accounts in the cookie, have %d", len(others)+1)
					}
				}
				credential = "sid=" + br.Cookie("sid").Value
			}
			r := gin.New()
			r.Use(ginoauth.Middleware(a.Manager))
			r.GET("/me", hello)
			serve(b, r, credential)
		})
	}
}

// didAnswer is the measured route's answer.
type didAnswer struct {
	DID string `json:"did"`
}

// serve loads h with GET /me carrying credential: "Bearer ..." as the
// Authorization header, anything else as the Cookie header.
func serve(b *testing.B, h http.Handler, credential string) {
	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	switch {
	case strings.HasPrefix(credential, "Bearer "):
		req.Header.Set("Authorization", credential)
	case credential != "":
		req.Header.Set("Cookie", credential)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || (credential != "" && w.Body.String() == "anonymous") {
			b.Fatalf("unexpected answer %d %q", w.Code, w.Body.String())
		}
	}
}
