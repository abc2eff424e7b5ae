package interop_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/refpds"
)

// TestInteropIdentity: against the reference PDS, with identities resolved
// through its PLC directory and its handle resolution, an account of the
// test's own changes its handle (com.atproto.identity.updateHandle) and is
// then deactivated (com.atproto.server.deactivateAccount) by its owner
// from elsewhere, under a logged-in app. The app's background check shows
// the new handle; the PDS's AccountDeactivated answer to the next write
// ends the session with account_deactivated and a 401, not a 5xx.
func TestInteropIdentity(t *testing.T) {
	env := refpds.ForTest(t)
	for _, s := range storages() {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			name := "idt" + rand.Text()[:10]
			name = lower(name)
			acct, err := env.CreateAccount(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			events := make(chan ginoauth.Event, 64)
			a := newApp(t, env, s.New(t), func(o *apptest.Options) {
				o.Configure = func(c *ginoauth.Config) { c.OnEvent = func(e ginoauth.Event) { events <- e } }
			})
			b := a.NewBrowser()
			if cb := b.Get(b.Consent(b.StartLogin(acct.Handle.String(), "/"), acct.Handle.String())); cb.Status != http.StatusFound {
				t.Fatalf("callback: %d %s", cb.Status, cb.Body)
			}
			if s := b.Get("/api/session").JSON(t); s["handle"] != acct.Handle.String() {
				t.Fatalf("session: %v", s)
			}

			newHandle := name + "n.test"
			if err := env.PasswordCall(ctx, acct, "com.atproto.identity.updateHandle", map[string]string{"handle": newHandle}, nil); err != nil {
				t.Fatal(err)
			}
			a.Clock.Advance(61 * time.Minute) // the identity interval has passed
			b.Get("/api/session")
			e := waitEvent(t, events, func(e ginoauth.Event) bool { return e.Type == ginoauth.EventIdentityChanged })
			if e.Handle != newHandle || e.PreviousHandle != acct.Handle.String() || e.PDS != env.Issuer {
				t.Fatalf("identity event %+v", e)
			}
			if s := b.Get("/api/session").JSON(t); s["handle"] != newHandle {
				t.Fatalf("session after updateHandle: %v", s)
			}

			if err := env.PasswordCall(ctx, acct, "com.atproto.server.deactivateAccount", map[string]any{}, nil); err != nil {
				t.Fatal(err)
			}
			if r := b.PostForm("/api/post", url.Values{"text": {"after deactivation"}}); r.Status != http.StatusUnauthorized {
				t.Fatalf("write of a deactivated account: %d %s; want 401", r.Status, r.Body)
			}
			e = waitEvent(t, events, func(e ginoauth.Event) bool { return e.Type == ginoauth.EventSessionEnded })
			if e.Reason != ginoauth.EndAccountDeactivated {
				t.Fatalf("end reason %q; want account_deactivated", e.Reason)
			}
			if r := b.Get("/api/session"); r.Status != http.StatusUnauthorized {
				t.Fatalf("session after deactivation: %d %s", r.Status, r.Body)
			}
		})
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func waitEvent(t *testing.T, events <-chan ginoauth.Event, match func(ginoauth.Event) bool) ginoauth.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-events:
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatal("no matching event")
		}
	}
}
