package indigoclient_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// A move to another PDS of the same authorization server lands while a
// token refresh is in flight (the server has rotated the tokens, the
// client has not saved them yet). FollowPDS writes under the refresh
// lock, so the refresh's save (from the session it loaded before the move)
// cannot put the old PDS back, and the move cannot drop the rotated
// tokens. Without the lock in FollowPDS the stored session ended on the
// old PDS.
func TestFollowPDSDuringRefresh(t *testing.T) {
	for _, be := range testdb.All() {
		t.Run(be.Name, func(t *testing.T) {
			r := newRig(t)
			r.as.AddPDSHost("pds2.test")
			// The directory still names the old PDS: the Manager's own
			// identity check (after the refresh) would move the session back.
			a := r.app(be.New(t), func(o *apptest.Options) {
				o.Configure = func(c *ginoauth.Config) { c.IdentityCheckInterval = -1 }
			})
			b, id := r.login(a)

			arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
			refreshed := make(chan int)
			go func() { refreshed <- b.PostForm("/api/refresh", nil).Status }()
			<-arrived // the server rotated the tokens; the client has not seen them
			followed := make(chan error)
			go func() {
				followed <- a.Client.FollowPDS(context.Background(), r.did.String(), id, "https://pds2.test")
			}()
			time.Sleep(200 * time.Millisecond) // an unlocked FollowPDS would be done by now
			release()
			if st := <-refreshed; st != http.StatusOK {
				t.Fatalf("refresh: %d", st)
			}
			if err := <-followed; err != nil {
				t.Fatalf("FollowPDS: %v", err)
			}
			data, err := r.stored(a, id)
			if err != nil {
				t.Fatal(err)
			}
			if data.HostURL != "https://pds2.test" {
				t.Fatalf("stored PDS %q after the move; want https://pds2.test", data.HostURL)
			}
			r.alive(a, id)
			if st := getStatus(b, "/api/pds-session"); st != http.StatusOK || r.as.PDSRequests("pds2.test") == 0 {
				t.Fatalf("call after the move: %d, %d at the new PDS", st, r.as.PDSRequests("pds2.test"))
			}
		})
	}
}

// A move to a PDS another authorization server protects leaves the
// session as it is and says so; CheckIdentity reports what the directory
// and the PDS say.
func TestFollowPDSOtherServerAndCheckIdentity(t *testing.T) {
	r := newRig(t)
	other := ginoauthtest.New(t, ginoauthtest.Options{Host: "pds3.test"})
	if err := r.as.Route("https://pds3.test", other.URL()); err != nil {
		t.Fatal(err)
	}
	a := r.app(nil)
	_, id := r.login(a)
	ctx := context.Background()
	if err := a.Client.FollowPDS(ctx, r.did.String(), id, "https://pds3.test"); !errors.Is(err, oauthclient.ErrAccountMoved) {
		t.Fatalf("FollowPDS to another authorization server: %v; want ErrAccountMoved", err)
	}
	if data, _ := r.stored(a, id); data == nil || data.HostURL != "https://pds.test" {
		t.Fatalf("the session must stay as it was: %+v", data)
	}
	check := func(want oauthclient.Identity) {
		t.Helper()
		got, err := a.Client.CheckIdentity(ctx, r.did.String())
		if err != nil || got != want {
			t.Fatalf("CheckIdentity: %+v %v; want %+v", got, err, want)
		}
	}
	check(oauthclient.Identity{Handle: "alice.test", PDS: "https://pds.test"})
	_ = r.as.UpdateHandle("alice.test", "alice-new.test")
	check(oauthclient.Identity{Handle: "alice-new.test", PDS: "https://pds.test"})
	_ = r.as.UnpublishHandle("alice-new.test")
	check(oauthclient.Identity{Handle: oauthclient.HandleInvalid, PDS: "https://pds.test"})
	_ = r.as.DeactivateAccount(r.did.String())
	check(oauthclient.Identity{Handle: oauthclient.HandleInvalid, PDS: "https://pds.test", Status: oauthclient.StatusDeactivated})
	_ = r.as.TakeDownAccount(r.did.String())
	check(oauthclient.Identity{Handle: oauthclient.HandleInvalid, PDS: "https://pds.test", Status: oauthclient.StatusTakendown})
	_ = r.as.DeleteAccount(r.did.String())
	check(oauthclient.Identity{Handle: oauthclient.HandleInvalid, Status: oauthclient.StatusDeleted})
}
