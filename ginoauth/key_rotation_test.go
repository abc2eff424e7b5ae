package ginoauth_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// A confidential client rotates its key the way the README's "Rotating the
// client key" says, on three instances sharing one store, each step a
// rolling deploy (one instance at a time, the others serving meanwhile).
// The authorization server (ginoauthtest, bound to client keys like the
// reference) reads the client's metadata from any instance at every request
// and ends the sessions whose key is missing from it, so an instance that
// ever left out a key in use would show here as a lost login.
//
// Sessions started before and after the new key both refresh on every
// instance; retiring the old key ends exactly its sessions (tokens revoked,
// key_retired, one event each), leaves the new key's sessions alone, and
// drops the old key from the JWKS; the users of the old key log in again.
func TestClientKeyRotationAcrossInstances(t *testing.T) {
	for _, be := range []string{"memory", "sqlite", "postgres", "redis"} {
		t.Run(be, func(t *testing.T) {
			stores := testdb.Handles(t, be, 3)
			r := &keyRotation{t: t, as: ginoauthtest.New(t, ginoauthtest.Options{})}
			for _, h := range []string{"alice.test", "bob.test", "carol.test", "dave.test"} {
				r.as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(h)})
			}
			r.d = apptest.NewDeployment(t, r.as, 3)
			old := indigoclient.ClientKey{ID: "2026-06", Key: newP256(t), State: indigoclient.KeyCurrent}
			next := indigoclient.ClientKey{ID: "2026-12", Key: newP256(t), State: indigoclient.KeyNext}
			deploy := func(keys ...indigoclient.ClientKey) {
				for i := range stores {
					r.d.Start(i, stores[i], mustKeySet(t, keys...))
					r.checkEveryoneRefreshes()
				}
			}

			// Before: one key.
			deploy(old)
			r.login(0, "alice.test", old.ID)

			// Step 1: announce the new key.
			r.d.Start(0, stores[0], mustKeySet(t, old, next))
			r.login(1, "bob.test", old.ID) // on an instance that does not know the new key yet
			deploy(old, next)
			for i := range stores {
				if got := r.jwks(i); !slices.Equal(got, []string{old.ID, next.ID}) {
					t.Fatalf("step 1: instance %d publishes %v", i, got)
				}
			}

			// Step 2: the new key signs new logins; the old one keeps its
			// sessions.
			old.State, next.State = indigoclient.KeyPrevious, indigoclient.KeyCurrent
			r.d.Start(0, stores[0], mustKeySet(t, next, old))
			r.login(0, "carol.test", next.ID) // the new key, on the redeployed instance
			r.login(2, "dave.test", old.ID)   // the old key, on an instance not redeployed yet
			r.checkEveryoneRefreshes()
			deploy(next, old)
			for i := range stores {
				if got := r.jwks(i); !slices.Equal(got, []string{old.ID, next.ID}) {
					t.Fatalf("step 2: instance %d publishes %v while sessions use both keys", i, got)
				}
			}

			// Step 3: retire the old key. The first instance deployed ends
			// its sessions as it starts.
			old.State = indigoclient.KeyRetired
			r.d.Start(0, stores[0], mustKeySet(t, next, old))
			retired := []string{"alice.test", "bob.test", "dave.test"}
			for _, h := range retired {
				did := r.as.Sessions(h)[0].DID.String()
				waitUntil(t, h+"'s session to end", func() bool { return r.keyRetiredEvents(did) > 0 })
			}
			if got := r.jwks(0); !slices.Equal(got, []string{next.ID}) {
				t.Fatalf("step 3: the instance that retired the old key publishes %v", got)
			}
			gone := map[string]*ginoauthtest.Browser{}
			for _, h := range retired {
				gone[h] = r.browsers[h]
				delete(r.browsers, h)
			}
			deploy(next, old)
			for i := range stores {
				if got := r.jwks(i); !slices.Equal(got, []string{next.ID}) {
					t.Fatalf("after step 3: instance %d publishes %v", i, got)
				}
			}
			for _, h := range retired {
				s := r.as.Sessions(h)[0]
				if s.Active || r.as.TokenActive(s.RefreshToken) || r.as.TokenActive(s.AccessToken) {
					t.Fatalf("%s: the retired key's session is still live at the server: %+v", h, s)
				}
				for i := range stores {
					if st := gone[h].Get(r.d.Instance(i).Server.URL + "/api/whoami").Status; st != http.StatusUnauthorized {
						t.Fatalf("%s is still logged in at instance %d: %d", h, i, st)
					}
				}
				if n := r.keyRetiredEvents(s.DID.String()); n != 1 {
					t.Fatalf("%s: %d key_retired events, want 1", h, n)
				}
			}
			if n := r.keyRetiredEvents(r.as.Sessions("carol.test")[0].DID.String()); n != 0 {
				t.Fatalf("carol's session, on the new key, ended: %d events", n)
			}
			r.checkEveryoneRefreshes() // carol, on every instance

			// The old key's users log in again, on the new key.
			r.login(1, "alice.test", next.ID)
			r.checkEveryoneRefreshes()
			if st := r.as.Stats(); st.ReplaysDetected != 0 || st.KeyMismatches != 0 || st.SessionsRevoked != len(retired) {
				t.Fatalf("server: %+v", st)
			}
		})
	}
}

// rotation is the state of TestClientKeyRotationAcrossInstances.
type keyRotation struct {
	t        *testing.T
	as       *ginoauthtest.Server
	d        *apptest.Deployment
	browsers map[string]*ginoauthtest.Browser // the logged-in users
}

// login logs handle in from instance slot and checks the key the server
// bound the session to.
func (r *keyRotation) login(slot int, handle, wantKey string) {
	r.t.Helper()
	b := r.d.Instance(slot).NewBrowser()
	if resp := b.Login(handle, ""); resp.Status != http.StatusFound {
		r.t.Fatalf("login of %s at instance %d: %d %s", handle, slot, resp.Status, resp.Body)
	}
	var live []ginoauthtest.SessionInfo
	for _, s := range r.as.Sessions(handle) {
		if s.Active {
			live = append(live, s)
		}
	}
	if len(live) != 1 || live[0].ClientKeyID != wantKey {
		r.t.Fatalf("%s's live sessions at the server: %+v; want one bound to %s", handle, live, wantKey)
	}
	if r.browsers == nil {
		r.browsers = map[string]*ginoauthtest.Browser{}
	}
	r.browsers[handle] = b
}

// checkEveryoneRefreshes makes every logged-in user's access token expire
// and call the PDS through every instance in turn, each call a refresh.
func (r *keyRotation) checkEveryoneRefreshes() {
	r.t.Helper()
	for h, b := range r.browsers {
		for i := range 3 {
			a := r.d.Instance(i)
			if a == nil {
				continue
			}
			r.as.ExpireAccessTokens()
			if resp := b.Get(a.Server.URL + "/api/pds-session"); resp.Status != http.StatusOK {
				r.t.Fatalf("%s's refresh at instance %d: %d %s (%+v)", h, i, resp.Status, resp.Body, r.as.Stats())
			}
		}
	}
}

// jwks is the kids instance slot publishes (private members fail the test).
func (r *keyRotation) jwks(slot int) []string {
	r.t.Helper()
	var kids []string
	for _, k := range r.d.JWKS(slot) {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				r.t.Fatalf("instance %d publishes a private member %q", slot, private)
			}
		}
		kid, _ := k["kid"].(string)
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	return kids
}

func (r *keyRotation) keyRetiredEvents(did string) int {
	n := 0
	for _, e := range r.d.Events() {
		if e.Type == ginoauth.EventSessionEnded && e.Reason == ginoauth.EndKeyRetired && e.DID == did {
			n++
		}
	}
	return n
}

func newP256(t testing.TB) *atcrypto.PrivateKeyP256 {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKeySet(t testing.TB, keys ...indigoclient.ClientKey) *indigoclient.KeySet {
	t.Helper()
	ks, err := indigoclient.NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// waitUntil polls cond for up to 30 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
