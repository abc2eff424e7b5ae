package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// The minimal app through a real login: the form, consent at the local
// server, the private page, and logout back to the start page.
func TestMinimalApp(t *testing.T) {
	gin.SetMode(gin.TestMode)
	pds := ginoauthtest.New(t, ginoauthtest.Options{})
	pds.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	srv := httptest.NewUnstartedServer(nil)
	r, mgr, closeApp, err := newApp(pds, memstore.New(), "http://"+srv.Listener.Addr().String(), strings.Repeat("s", 32))
	if err != nil {
		t.Fatal(err)
	}
	defer closeApp()
	srv.Config.Handler = r
	srv.Start()
	defer srv.Close()
	if report := mgr.SelfCheck(context.Background(), nil); report.Err() != nil {
		t.Fatalf("self-check: %v\n%s", report.Err(), report)
	}

	b := ginoauthtest.NewBrowser(t, srv.URL, pds.Consent)
	html := http.Header{"Accept": {"text/html"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	if p := b.Get("/"); !strings.Contains(string(p.Body), `action="/login"`) {
		t.Fatalf("start page: %s", p.Body)
	}
	if p := b.Do(http.MethodPost, "/login", strings.NewReader("handle=not+a+handle"), html); p.Status != http.StatusBadRequest || !strings.Contains(string(p.Body), "Start again") {
		t.Fatalf("a bad handle renders through ErrorHandler: %d %s", p.Status, p.Body)
	}
	if p := b.Get("/private"); p.Status != http.StatusUnauthorized {
		t.Fatalf("private page before login: %d", p.Status)
	}
	r2 := b.Do(http.MethodPost, "/login", strings.NewReader(url.Values{"handle": {"alice.test"}}.Encode()), html)
	if r2.Status != http.StatusFound {
		t.Fatalf("login form: %d %s", r2.Status, r2.Body)
	}
	if cb := b.Get(b.Consent(r2.Header.Get("Location"), "alice.test")); cb.Status != http.StatusFound || cb.Header.Get("Location") != "/" {
		t.Fatalf("callback: %d %s", cb.Status, cb.Header.Get("Location"))
	}
	if p := b.Get("/"); !strings.Contains(string(p.Body), "Hello @alice.test") {
		t.Fatalf("after login: %s", p.Body)
	}
	if p := b.Get("/private"); p.Status != http.StatusOK || !strings.Contains(string(p.Body), "did:plc:") {
		t.Fatalf("private page: %d %s", p.Status, p.Body)
	}
	out := b.Do(http.MethodPost, "/api/logout", nil, html)
	if out.Status != http.StatusSeeOther || out.Header.Get("Location") != "/" {
		t.Fatalf("logout from the form must go back to /: %d %s", out.Status, out.Header.Get("Location"))
	}
	if p := b.Get("/private"); p.Status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", p.Status)
	}
}
