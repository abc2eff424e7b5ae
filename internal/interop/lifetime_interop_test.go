package interop_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/internal/refpds"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// The reference server gives a public client's grant two weeks from the
// login, and a refresh does not extend it: a device session never outlives
// that, before or after a refresh, and its cookie not either.
func TestInteropSessionNeverOutlivesTheGrant(t *testing.T) {
	env := refpds.ForTest(t)
	acct, err := env.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(t, env, testdb.All()[1].New(t))
	b := a.NewBrowser()
	start := time.Now()
	cb := b.Get(b.Consent(b.StartLogin(acct.Handle.String(), "/"), acct.Handle.String()))
	if cb.Status != http.StatusFound {
		t.Fatalf("callback: %d %s", cb.Status, cb.Body)
	}
	grantEnd := start.Add(14 * 24 * time.Hour)
	check := func(when string) {
		t.Helper()
		r := b.Get("/api/session")
		exp, err := time.Parse(time.RFC3339Nano, r.JSON(t)["expiresAt"].(string))
		if r.Status != http.StatusOK || err != nil {
			t.Fatalf("%s: session %d %s", when, r.Status, r.Body)
		}
		if exp.After(grantEnd.Add(time.Minute)) {
			t.Fatalf("%s: the session expires %v, after its grant (%v)", when, exp, grantEnd)
		}
		if exp.Before(grantEnd.Add(-time.Hour)) {
			t.Fatalf("%s: the session expires %v, long before its grant (%v): a login should last as long as its grant", when, exp, grantEnd)
		}
	}
	check("after login")
	for _, raw := range cb.Header.Values("Set-Cookie") {
		if strings.HasPrefix(raw, "sid=") && !strings.Contains(raw, "Max-Age=120959") && !strings.Contains(raw, "Max-Age=1209600") {
			t.Fatalf("the session cookie should last the grant's two weeks: %s", raw)
		}
	}
	if r := b.PostForm("/api/refresh", nil); r.Status != http.StatusOK {
		t.Fatalf("forced refresh: %d %s", r.Status, r.Body)
	}
	check("after a refresh")
}
