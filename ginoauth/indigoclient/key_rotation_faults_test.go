package indigoclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// Faults injected at the worst moments of a token path that signs with a
// session's own key while another key is current. The server refuses an
// assertion signed with any other key than the session's (ginoauthtest does,
// like the reference), so signing with the wrong key loses the login.

// rotated starts instances 0 and 1 on stores with {k1 current}, logs the
// handles in (their sessions are bound to k1), then redeploys both with
// {k2 current, k1 previous}, as step 2 of a rotation.
func (r *confidentialRig) rotated(be string, handles ...string) (k1, k2 indigoclient.ClientKey, browsers []*ginoauthtest.Browser) {
	r.t.Helper()
	stores := testdb.Handles(r.t, be, 2)
	k1 = indigoclient.ClientKey{ID: "k1", Key: p256(r.t), State: indigoclient.KeyCurrent}
	k2 = indigoclient.ClientKey{ID: "k2", Key: p256(r.t), State: indigoclient.KeyCurrent}
	r.d.Start(0, stores[0], keySet(r.t, k1))
	r.d.Start(1, stores[1], keySet(r.t, k1))
	for _, h := range handles {
		b, _ := r.login(0, h)
		browsers = append(browsers, b)
	}
	k1.State = indigoclient.KeyPrevious
	for i := range 2 {
		r.d.Start(i, stores[i], keySet(r.t, k2, k1))
	}
	return k1, k2, browsers
}

// sessionOf is the server's only session of handle.
func (r *confidentialRig) sessionOf(handle string) ginoauthtest.SessionInfo {
	r.t.Helper()
	s := r.as.Sessions(handle)
	if len(s) != 1 {
		r.t.Fatalf("%s has %d sessions at the server, want 1", handle, len(s))
	}
	return s[0]
}

// Storage fails just as a refresh of a session bound to the previous key
// has spent its refresh token: the rotated tokens are kept in memory and
// saved when storage is back, still bound to the previous key, so the next
// refresh, on another instance, signs with that key again. (Failed when a
// rotation's save dropped the record's key id: the next refresh was signed
// with the current key, refused for good, and the login lost.)
func TestRefreshWithPreviousKeyWhileStorageFails(t *testing.T) {
	for _, be := range []string{"memory", "sqlite"} {
		t.Run(be, func(t *testing.T) {
			r := newConfidentialRig(t, 2)
			_, _, bs := r.rotated(be, "alice.test")
			b := bs[0]
			a := r.d.Instance(0)
			indigoclient.SetSaveBudget(a.Client.Client, 100*time.Millisecond)

			remove := a.Store.Fail(apptest.OpSet, "oauth:sess:", -1)
			if st := r.expireAndCall(b, 0); st != http.StatusOK {
				t.Fatalf("refresh while storage fails: %d", st)
			}
			if got := r.sessionOf("alice.test"); got.Refreshes != 1 || got.ClientKeyID != "k1" {
				t.Fatalf("the refresh was not made with k1: %+v", got)
			}
			if st := b.Get(a.Server.URL + "/api/pds-session").Status; st != http.StatusOK {
				t.Fatalf("a call with the rescued tokens: %d", st)
			}
			remove()
			waitFor(t, "the rescued tokens to be saved", func() bool {
				data, err := a.Client.Store().GetSession(context.Background(), syntax.DID(r.sessionOf("alice.test").DID), sessionIDOf(t, b, a))
				return err == nil && data.RefreshToken == r.sessionOf("alice.test").RefreshToken
			})

			if st := r.expireAndCall(b, 1); st != http.StatusOK {
				t.Fatalf("the next refresh, on the other instance: %d (%+v)", st, r.as.Stats())
			}
			got := r.sessionOf("alice.test")
			if st := r.as.Stats(); !got.Active || got.Refreshes != 2 || st.KeyMismatches != 0 || st.ReplaysDetected != 0 {
				t.Fatalf("the login did not survive: %+v %+v", got, st)
			}
		})
	}
}

// sessionIDOf is the OAuth session id of b's login, asked of instance a.
func sessionIDOf(t *testing.T, b *ginoauthtest.Browser, a *apptest.App) string {
	t.Helper()
	return b.Get(a.Server.URL + "/api/whoami").JSON(t)["oauthSessionID"].(string)
}

// waitFor polls cond for up to 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// endedFor counts the key_retired session ends of did among events.
func endedFor(events []ginoauth.Event, did string) int {
	n := 0
	for _, e := range events {
		if e.Type == ginoauth.EventSessionEnded && e.Reason == ginoauth.EndKeyRetired && e.DID == did {
			n++
		}
	}
	return n
}

// A key is retired (an instance starts with it retired and ends its
// sessions) while another instance, still holding it as previous, is in the
// middle of refreshing one of them: the server has rotated the tokens, the
// instance has not saved them yet. The retirement waits for the refresh
// (the refresh lock), then revokes the rotated tokens with the retired key:
// no live token of the retired key's sessions is left anywhere, each ends
// with one key_retired event, and a session of the current key is
// untouched. (Failed when a retired key could not sign revocations: the
// rotated tokens stayed live at the server.)
func TestRetirementRacingARefresh(t *testing.T) {
	for _, be := range []string{"memory", "sqlite"} {
		t.Run(be, func(t *testing.T) {
			r := newConfidentialRig(t, 2)
			k1, k2, bs := r.rotated(be, "alice.test", "bob.test")
			alice, bob := bs[0], bs[1]
			carol, _ := r.login(0, "carol.test") // bound to k2
			if got := r.sessionOf("carol.test").ClientKeyID; got != "k2" {
				t.Fatalf("a new login is bound to %q, want the current key", got)
			}

			arrived, release := r.d.Gate.Hold(apptest.IsRefreshGrant, true)
			r.as.ExpireAccessTokens()
			done := make(chan int, 1)
			go func() { done <- alice.Get(r.d.Instance(0).Server.URL + "/api/pds-session").Status }()
			<-arrived // the server rotated alice's tokens; instance 0 holds the lock and has not saved them

			k1.State = indigoclient.KeyRetired
			aliceDID := r.sessionOf("alice.test").DID.String()
			watch := &lockWatch{Store: r.d.Instance(1).Store.Store, name: indigoclient.RefreshLockName(aliceDID, sessionIDOf(t, alice, r.d.Instance(1))), hit: make(chan struct{})}
			r.d.Start(1, watch, keySet(t, k2, k1)) // its Manager ends k1's sessions as it starts
			// The retirement reached alice's session and waits for its refresh lock.
			select {
			case <-watch.hit:
			case <-time.After(30 * time.Second):
				t.Fatal("the retirement never tried to revoke alice's session")
			}
			release()
			<-done // 200, or an error if the revocation overtook its PDS call: either is fine
			waitFor(t, "alice's session to end", func() bool { return endedFor(r.d.Events(), aliceDID) == 1 })

			a := r.sessionOf("alice.test")
			if a.Active || a.Refreshes != 1 || r.as.TokenActive(a.RefreshToken) || r.as.TokenActive(a.AccessToken) {
				t.Fatalf("alice's rotated tokens are still live: %+v", a)
			}
			if b := r.sessionOf("bob.test"); b.Active {
				t.Fatalf("bob's session is live: %+v", b)
			}
			for slot := range 2 {
				for name, br := range map[string]*ginoauthtest.Browser{"alice": alice, "bob": bob} {
					if st := br.Get(r.d.Instance(slot).Server.URL + "/api/whoami").Status; st != http.StatusUnauthorized {
						t.Fatalf("%s is still logged in at instance %d: %d", name, slot, st)
					}
				}
				if st := r.expireAndCall(carol, slot); st != http.StatusOK {
					t.Fatalf("carol's refresh at instance %d: %d", slot, st)
				}
			}
			bobDID := r.sessionOf("bob.test").DID.String()
			waitFor(t, "bob's session to end", func() bool { return endedFor(r.d.Events(), bobDID) == 1 })
			time.Sleep(50 * time.Millisecond) // let a duplicate event show, if any
			if st := r.as.Stats(); st.ReplaysDetected != 0 || st.KeyMismatches != 0 || endedFor(r.d.Events(), aliceDID) != 1 || endedFor(r.d.Events(), bobDID) != 1 {
				t.Fatalf("stats %+v, events %+v", st, r.d.Events())
			}
		})
	}
}

// lockWatch is a store whose hit closes when a Lock of name begins.
type lockWatch struct {
	storage.Store
	name string
	once sync.Once
	hit  chan struct{}
}

func (w *lockWatch) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	if name == w.name {
		w.once.Do(func() { close(w.hit) })
	}
	return w.Store.(storage.Locker).Lock(ctx, name, ttl)
}

func (w *lockWatch) Take(ctx context.Context, key string) ([]byte, error) {
	return w.Store.(storage.Taker).Take(ctx, key)
}

func (w *lockWatch) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	return w.Store.(storage.Indexer).AddMember(ctx, set, member, ttl)
}

func (w *lockWatch) RemoveMember(ctx context.Context, set, member string) error {
	return w.Store.(storage.Indexer).RemoveMember(ctx, set, member)
}

func (w *lockWatch) Members(ctx context.Context, set string) ([]string, error) {
	return w.Store.(storage.Indexer).Members(ctx, set)
}

// A retired key signs nothing new. When the sweep that ends its sessions
// cannot run (here the key index fails), a session of the retired key ends
// at its next use, with key_retired and its tokens revoked; a login started
// with the key before it was retired cannot complete. (Failed when the
// retired state only hid the key from the JWKS: the session went on being
// refreshed with it.)
func TestRetiredKeyEndsSessionsAtTheirNextUse(t *testing.T) {
	r := newConfidentialRig(t, 2)
	k1, k2, bs := r.rotated("memory", "alice.test")
	alice := bs[0]
	// A login started with k1 on instance 1, consented, not yet back.
	k1.State = indigoclient.KeyCurrent
	store := r.d.Instance(1).Store.Store
	r.d.Start(1, store, keySet(t, k1))
	late := r.d.Instance(1).NewBrowser()
	callback := late.Consent(late.StartLogin("bob.test", ""), "bob.test")

	k1.State = indigoclient.KeyRetired
	blind := &failingMembers{Store: store} // the sweep cannot list k1's sessions
	a := r.d.Start(0, blind, keySet(t, k2, k1))
	r.d.Start(1, blind, keySet(t, k2, k1))
	aliceDID := r.sessionOf("alice.test").DID.String()
	if st := alice.Get(a.Server.URL + "/api/pds-session").Status; st != http.StatusUnauthorized {
		t.Fatalf("a call with a session of the retired key: %d", st)
	}
	waitFor(t, "alice's session to end", func() bool { return endedFor(r.d.Events(), aliceDID) == 1 })
	if s := r.sessionOf("alice.test"); s.Active || r.as.TokenActive(s.RefreshToken) {
		t.Fatalf("alice's tokens were not revoked: %+v", s)
	}
	if resp := late.Get(callback); resp.Status != http.StatusBadRequest {
		t.Fatalf("the callback of a login started with the retired key: %d %s", resp.Status, resp.Body)
	}
	if st := r.as.Stats(); st.KeyMismatches != 0 || st.CodeGrants != 1 {
		t.Fatalf("a retired key signed a request: %+v", st)
	}
}

// failingMembers is a store whose index cannot be listed.
type failingMembers struct{ storage.Store }

func (f *failingMembers) Take(ctx context.Context, key string) ([]byte, error) {
	return f.Store.(storage.Taker).Take(ctx, key)
}

func (f *failingMembers) Lock(ctx context.Context, name string, ttl time.Duration) (storage.Unlock, error) {
	return f.Store.(storage.Locker).Lock(ctx, name, ttl)
}

func (f *failingMembers) AddMember(ctx context.Context, set, member string, ttl time.Duration) error {
	return f.Store.(storage.Indexer).AddMember(ctx, set, member, ttl)
}

func (f *failingMembers) RemoveMember(ctx context.Context, set, member string) error {
	return f.Store.(storage.Indexer).RemoveMember(ctx, set, member)
}

func (f *failingMembers) Members(ctx context.Context, set string) ([]string, error) {
	if strings.HasPrefix(set, "oauth:key:") {
		return nil, errors.New("injected: the key index cannot be listed")
	}
	return f.Store.(storage.Indexer).Members(ctx, set)
}
