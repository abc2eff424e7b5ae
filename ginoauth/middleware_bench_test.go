package ginoauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

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
	hello := func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		if u == nil {
			c.String(http.StatusOK, "anonymous")
			return
		}
		c.String(http.StatusOK, u.DID)
	}
	b.Run("bare-gin", func(b *testing.B) {
		r := gin.New()
		r.GET("/me", hello)
		serve(b, r, nil)
	})
	for _, be := range []testdb.Backend{testdb.All()[0], testdb.All()[1]} { // memory, SQLite
		b.Run(be.Name, func(b *testing.B) {
			a := newTestApp(b, be.New(b))
			br := a.NewBrowser()
			br.Login("alice.test", "")
			r := gin.New()
			r.Use(ginoauth.Middleware(a.Manager))
			r.GET("/me", hello)
			serve(b, r, &http.Cookie{Name: "sid", Value: br.Cookie("sid").Value})
		})
	}
}

func serve(b *testing.B, h http.Handler, cookie *http.Cookie) {
	req := httptest.NewRequest(http.MethodGet, "/me", nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || (cookie != nil && w.Body.String() == "anonymous") {
			b.Fatalf("unexpected answer %d %q", w.Code, w.Body.String())
		}
	}
}
