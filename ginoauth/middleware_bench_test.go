package ginoauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// BenchmarkAuthenticatedRequest is what every logged-in request costs in the
// library: decoding the sealed cookie, one storage read of the session
// record, and the user in the Gin context, served in process by Gin. The
// bare case is the same route without the middleware.
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
	}{
		{"memory", testdb.All()[0], false, false},
		{"memory+cache", testdb.All()[0], true, false},
		{"memory+bearer", testdb.All()[0], false, true},
		{"sqlite", testdb.All()[1], false, false},
		{"sqlite+bearer", testdb.All()[1], false, true},
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
