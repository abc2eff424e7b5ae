package ginoauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// RequireAuth works without Middleware in front of it (it loads the session
// itself), and answers through Config.ErrorHandler like every other failure.
func TestRequireAuthStandsAlone(t *testing.T) {
	var handled []ginoauth.ErrorResponse
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.ErrorHandler = func(c *gin.Context, e ginoauth.ErrorResponse) {
			handled = append(handled, e)
			c.Data(e.Status, "text/html; charset=utf-8", []byte("<p>"+e.Message+"</p>"))
		}
	})
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid").Value

	r := gin.New() // no Middleware
	r.GET("/private", ginoauth.RequireAuth(a.Manager), func(c *gin.Context) {
		u, _ := ginoauth.CurrentUser(c)
		c.String(http.StatusOK, u.Handle)
	})
	get := func(cookie string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/private", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "sid", Value: cookie})
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}
	if w := get(sid); w.Code != http.StatusOK || w.Body.String() != "alice.test" {
		t.Fatalf("logged in, without Middleware: %d %s", w.Code, w.Body)
	}
	if w := get(""); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "<p>login required</p>") {
		t.Fatalf("anonymous: want the app's 401 page, got %d %s", w.Code, w.Body)
	}
	if w := get(sid[:len(sid)-2] + "xx"); w.Code != http.StatusUnauthorized {
		t.Fatalf("tampered cookie: %d", w.Code)
	}
	if len(handled) != 2 || handled[0].Code != ginoauth.CodeNotLoggedIn || handled[1].Code != ginoauth.CodeInvalidCookie {
		t.Fatalf("ErrorHandler saw %+v", handled)
	}
	if got := ginoauth.ErrorResponseFor(&ginoauth.SessionError{Code: ginoauth.CodeSessionExpired}); got.Status != 401 || got.Code != ginoauth.CodeSessionExpired || got.Message != "login required" {
		t.Fatalf("ErrorResponseFor: %+v", got)
	}
}

// An app keeps its own gin-contrib session in the Manager's CookieStore,
// beside the login, and reads it with sessions.Default.
func TestAppSessionBesideTheLogin(t *testing.T) {
	a := newTestApp(t, nil)
	b := a.NewBrowser()
	b.Login("alice.test", "")
	sid := b.Cookie("sid")

	r := gin.New()
	r.Use(sessions.Sessions("app", a.Manager.CookieStore()), ginoauth.Middleware(a.Manager))
	r.GET("/set", func(c *gin.Context) {
		s := sessions.Default(c)
		s.Set("theme", "dark")
		s.AddFlash("saved")
		_ = s.Save()
	})
	r.GET("/get", func(c *gin.Context) {
		s := sessions.Default(c)
		u, ok := ginoauth.CurrentUser(c)
		if !ok {
			c.String(http.StatusUnauthorized, "no login")
			return
		}
		c.String(http.StatusOK, "%s %v %d", u.Handle, s.Get("theme"), len(s.Flashes()))
	})
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/set", nil)
	req.AddCookie(sid)
	r.ServeHTTP(w, req)
	var app *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == "app" {
			app = c
		}
	}
	if app == nil {
		t.Fatal("no app session cookie")
	}
	w = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodGet, "/get", nil)
	req.AddCookie(sid)
	req.AddCookie(app)
	r.ServeHTTP(w, req)
	if w.Code != http.StatusOK || w.Body.String() != "alice.test dark 1" {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
}
