package indigoclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

func p256(t testing.TB) *atcrypto.PrivateKeyP256 {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keySet(t testing.TB, keys ...indigoclient.ClientKey) *indigoclient.KeySet {
	t.Helper()
	ks, err := indigoclient.NewKeySet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestNewKeySetRefuses(t *testing.T) {
	k1, k2 := p256(t), p256(t)
	k256, _ := atcrypto.GeneratePrivateKeyK256()
	cur := func(id string, k atcrypto.PrivateKey) indigoclient.ClientKey {
		return indigoclient.ClientKey{ID: id, Key: k, State: indigoclient.KeyCurrent}
	}
	cases := []struct {
		name string
		keys []indigoclient.ClientKey
		want string
	}{
		{"none", nil, "no client key is current"},
		{"no current", []indigoclient.ClientKey{{ID: "a", Key: k1, State: indigoclient.KeyPrevious}}, "no client key is current"},
		{"two current", []indigoclient.ClientKey{cur("a", k1), cur("b", k2)}, "both current"},
		{"same id twice", []indigoclient.ClientKey{cur("a", k1), {ID: "a", Key: k2, State: indigoclient.KeyNext}}, "twice"},
		{"no id", []indigoclient.ClientKey{cur("", k1)}, "no ID"},
		{"id with a space", []indigoclient.ClientKey{cur("key 1", k1)}, "printable"},
		{"id with a control character", []indigoclient.ClientKey{cur("key\n1", k1)}, "printable"},
		{"id too long", []indigoclient.ClientKey{cur(strings.Repeat("k", 201), k1)}, "200"},
		{"no state", []indigoclient.ClientKey{cur("a", k1), {ID: "b", Key: k2}}, "no State"},
		{"unknown state", []indigoclient.ClientKey{cur("a", k1), {ID: "b", Key: k2, State: "old"}}, "unknown State"},
		{"K-256", []indigoclient.ClientKey{cur("a", k256)}, "P-256"},
		{"no key", []indigoclient.ClientKey{cur("a", nil)}, "no private key"},
		{"a previous key without its private key", []indigoclient.ClientKey{cur("a", k1), {ID: "b", State: indigoclient.KeyPrevious}}, "no private key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ks, err := indigoclient.NewKeySet(c.keys...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewKeySet: %v, %v (want an error saying %q)", ks, err, c.want)
			}
		})
	}
	// A retired key whose private half is gone is fine.
	if _, err := indigoclient.NewKeySet(cur("a", k1), indigoclient.ClientKey{ID: "b", State: indigoclient.KeyRetired}); err != nil {
		t.Fatal(err)
	}
}

// jwksOf decodes a Client's JWKS as raw objects, failing on any private
// member.
func jwksOf(t testing.TB, doc any) []string {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	return kidsOf(t, set.Keys)
}

// kidsOf returns the kids of JWKs, checking that each is a public P-256 key
// with full-length coordinates and no private member.
func kidsOf(t testing.TB, keys []map[string]any) []string {
	t.Helper()
	var kids []string
	for _, k := range keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[private]; ok {
				t.Fatalf("a JWKS key has the private member %q: %v", private, k)
			}
		}
		x, _ := k["x"].(string)
		y, _ := k["y"].(string)
		if k["kty"] != "EC" || k["crv"] != "P-256" || len(x) != 43 || len(y) != 43 {
			t.Fatalf("not a full-length public P-256 JWK: %v", k)
		}
		kid, _ := k["kid"].(string)
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	return kids
}

// The metadata of a client with no sessions publishes the current and next
// keys only; the inline jwks is the same set.
func TestPublishedKeysWithoutSessions(t *testing.T) {
	k1, k2, k3 := p256(t), p256(t), p256(t)
	cfg := oauth.NewPublicConfig(apptest.DeploymentClientID, "https://app.test/oauth/callback", []string{"atproto"})
	c := indigoclient.New(cfg, memstore.New(), indigoclient.Options{Keys: keySet(t,
		indigoclient.ClientKey{ID: "k1", Key: k1, State: indigoclient.KeyPrevious},
		indigoclient.ClientKey{ID: "k2", Key: k2, State: indigoclient.KeyCurrent},
		indigoclient.ClientKey{ID: "k3", Key: k3, State: indigoclient.KeyNext},
		indigoclient.ClientKey{ID: "k0", State: indigoclient.KeyRetired},
	)})
	defer c.Close()
	if got := jwksOf(t, c.PublicJWKS()); !slices.Equal(got, []string{"k2", "k3"}) {
		t.Fatalf("published %v, want k2 and k3", got)
	}
	md := c.ClientMetadata().(oauth.ClientMetadata)
	if md.TokenEndpointAuthMethod != "private_key_jwt" || md.JWKS == nil || !slices.Equal(jwksOf(t, md.JWKS), []string{"k2", "k3"}) {
		t.Fatalf("metadata: %+v", md)
	}
	usage, err := c.KeyUsage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []indigoclient.KeyUsage{
		{ID: "k1", State: indigoclient.KeyPrevious},
		{ID: "k2", State: indigoclient.KeyCurrent, Published: true},
		{ID: "k3", State: indigoclient.KeyNext, Published: true},
		{ID: "k0", State: indigoclient.KeyRetired},
	}
	if !slices.Equal(usage, want) {
		t.Fatalf("KeyUsage:\n%+v\nwant\n%+v", usage, want)
	}
}

// confidentialRig is one authorization server and a Deployment of a
// confidential client on it.
type confidentialRig struct {
	t  *testing.T
	as *ginoauthtest.Server
	d  *apptest.Deployment
}

func newConfidentialRig(t *testing.T, instances int) *confidentialRig {
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	for _, h := range []string{"alice.test", "bob.test", "carol.test"} {
		as.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle(h)})
	}
	return &confidentialRig{t: t, as: as, d: apptest.NewDeployment(t, as, instances)}
}

// login logs handle in, starting at instance slot (the callback lands on
// any instance), and returns the browser and the OAuth session's id.
func (r *confidentialRig) login(slot int, handle string) (*ginoauthtest.Browser, string) {
	r.t.Helper()
	b := r.d.Instance(slot).NewBrowser()
	if resp := b.Login(handle, ""); resp.Status != http.StatusFound {
		r.t.Fatalf("login of %s at instance %d: %d %s", handle, slot, resp.Status, resp.Body)
	}
	return b, b.Get("/api/whoami").JSON(r.t)["oauthSessionID"].(string)
}

// boundKey is the kid the server bound the session whose tokens b's
// instance holds to.
func (r *confidentialRig) boundKey(slot int, handle, sessionID string) ginoauthtest.SessionInfo {
	r.t.Helper()
	a := r.d.Instance(slot)
	data, err := a.Client.Store().GetSession(context.Background(), r.as.Sessions(handle)[0].DID, sessionID)
	if err != nil {
		r.t.Fatalf("stored session of %s: %v", handle, err)
	}
	info, ok := r.as.Session(data.RefreshToken)
	if !ok {
		r.t.Fatalf("the server does not know the stored refresh token of %s", handle)
	}
	return info
}

// A login started on an instance whose current key is one that other
// instances only hold as previous (a rolling deploy of a new current key),
// on a deployment with no session yet: the authorization server checks the
// PAR against the metadata of an instance that has the key as previous,
// which must publish it. It does because the login is in the key's index
// from before its PAR. (Failed when logins were indexed only at the
// callback: the PAR was refused with invalid_client.)
func TestLoginPublishesItsKeyBeforeThePAR(t *testing.T) {
	for _, be := range []string{"memory", "sqlite"} {
		t.Run(be, func(t *testing.T) {
			r := newConfidentialRig(t, 2)
			stores := testdb.Handles(t, be, 2)
			k1, k2 := p256(t), p256(t)
			r.d.Start(0, stores[0], keySet(t,
				indigoclient.ClientKey{ID: "k1", Key: k1, State: indigoclient.KeyCurrent},
				indigoclient.ClientKey{ID: "k2", Key: k2, State: indigoclient.KeyNext}))
			r.d.Start(1, stores[1], keySet(t,
				indigoclient.ClientKey{ID: "k2", Key: k2, State: indigoclient.KeyCurrent},
				indigoclient.ClientKey{ID: "k1", Key: k1, State: indigoclient.KeyPrevious}))
			if got := kidsOf(t, r.d.JWKS(1)); !slices.Equal(got, []string{"k2"}) {
				t.Fatalf("instance 1 publishes %v with no session; want only its current key", got)
			}
			r.d.PinMetadata(1) // the server reads the metadata from the instance that has k1 as previous
			indigoclient.ForgetKeyUse(r.d.Instance(1).Client.Client)
			_, id := r.login(0, "alice.test")
			if info := r.boundKey(0, "alice.test", id); info.ClientKeyID != "k1" || !info.Active {
				t.Fatalf("session: %+v", info)
			}
			if got := kidsOf(t, r.d.JWKS(1)); !slices.Equal(got, []string{"k1", "k2"}) {
				t.Fatalf("instance 1 publishes %v while a session uses k1", got)
			}
		})
	}
}

// Storage that cannot tell whether a previous key is in use publishes it:
// dropping a key in use would make the server revoke its sessions.
func TestJWKSPublishesWhenStorageFails(t *testing.T) {
	r := newConfidentialRig(t, 1)
	k1, k2 := p256(t), p256(t)
	a := r.d.Start(0, memstore.New(), keySet(t,
		indigoclient.ClientKey{ID: "k2", Key: k2, State: indigoclient.KeyCurrent},
		indigoclient.ClientKey{ID: "k1", Key: k1, State: indigoclient.KeyPrevious}))
	if got := kidsOf(t, r.d.JWKS(0)); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("published %v with no session on k1", got)
	}
	indigoclient.ForgetKeyUse(a.Client.Client)
	remove := a.Store.Fail(apptest.OpIndex, "oauth:key:", -1)
	defer remove()
	if got := kidsOf(t, r.d.JWKS(0)); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("published %v while storage failed; want every key that is not retired", got)
	}
}

// A login whose session cannot be recorded in its key's index fails (503),
// and its tokens are revoked at once: an unrecorded session could lose its
// key from the metadata. A login whose pending entry cannot be recorded
// does not start.
func TestLoginFailsWhenItsKeyCannotBeRecorded(t *testing.T) {
	r := newConfidentialRig(t, 1)
	a := r.d.Start(0, memstore.New(), keySet(t, indigoclient.ClientKey{ID: "k1", Key: p256(t), State: indigoclient.KeyCurrent}))

	remove := a.Store.Fail(apptest.OpIndex, "oauth:key:", 1)
	b := a.NewBrowser()
	if resp := b.Get("/login?handle=alice.test"); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("login start with the key index down: %d %s", resp.Status, resp.Body)
	}
	remove()
	if st := r.as.Stats(); st.PARs != 0 {
		t.Fatalf("a PAR was sent for a login whose key use could not be recorded: %+v", st)
	}

	authURL := b.StartLogin("alice.test", "")
	callback := b.Consent(authURL, "alice.test")
	remove = a.Store.Fail(apptest.OpIndex, "oauth:key:", 1)
	if resp := b.Get(callback); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("callback with the key index down: %d %s", resp.Status, resp.Body)
	}
	remove()
	if st := r.as.Stats(); st.CodeGrants != 1 || st.ActiveSessions != 0 || st.SessionsRevoked != 1 {
		t.Fatalf("the tokens of the failed login are still live: %+v", st)
	}
	if _, id := r.login(0, "alice.test"); id == "" {
		t.Fatal("no login after storage came back")
	}
}

// expireAndCall expires every access token and makes one PDS call through
// instance slot, which refreshes b's session there.
func (r *confidentialRig) expireAndCall(b *ginoauthtest.Browser, slot int) int {
	r.t.Helper()
	r.as.ExpireAccessTokens()
	u, _ := url.Parse(r.d.Instance(slot).Server.URL + "/api/pds-session")
	return b.Get(u.String()).Status
}

// Records written before key sets (a session and a pending login that name
// no key) are read, and bound to the key the ClientConfig names
// (SetClientSecret), which stays published: after an upgrade to a key set
// with a new current key, the old session refreshes and the old login
// completes, both signed with the old key.
func TestRecordsFromBeforeKeySets(t *testing.T) {
	r := newConfidentialRig(t, 1)
	store := memstore.New()
	k1 := p256(t)
	withSecret := func(o *apptest.Options) {
		cfg := *o.ClientConfig
		if err := cfg.SetClientSecret(k1, "k1"); err != nil {
			t.Fatal(err)
		}
		o.ClientConfig = &cfg
	}
	a := r.d.Start(0, store, nil, withSecret) // one key, the way apps configured it before key sets
	alice, id := r.login(0, "alice.test")
	did := r.sessionOf("alice.test").DID
	bob := a.NewBrowser()
	callback := bob.Consent(bob.StartLogin("bob.test", ""), "bob.test")

	// Make both records look as they were written before key sets.
	ctx := context.Background()
	state := mustQueryValue(t, callback, "state")
	for _, key := range []string{"oauth:sess:" + did.String() + ":" + id, "oauth:req:" + state} {
		raw, err := store.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		if rec["client_kid"] != "k1" {
			t.Fatalf("%s does not record its key: %v", key, rec["client_kid"])
		}
		delete(rec, "client_kid")
		raw, _ = json.Marshal(rec)
		if err := store.Set(ctx, key, raw, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{did.String() + " " + id, "login " + state} {
		if err := store.RemoveMember(ctx, "oauth:key:k1", m); err != nil {
			t.Fatal(err)
		}
	}

	upgraded := r.d.Start(0, store, keySet(t,
		indigoclient.ClientKey{ID: "k2", Key: p256(t), State: indigoclient.KeyCurrent},
		indigoclient.ClientKey{ID: "k1", Key: k1, State: indigoclient.KeyPrevious}), withSecret)
	if got := kidsOf(t, r.d.JWKS(0)); !slices.Equal(got, []string{"k1", "k2"}) {
		t.Fatalf("published %v; the key of sessions stored before key sets must stay", got)
	}
	r.as.ExpireAccessTokens()
	if st := alice.Get(upgraded.Server.URL + "/api/pds-session").Status; st != http.StatusOK {
		t.Fatalf("refresh of a session stored before key sets: %d (%+v)", st, r.as.Stats())
	}
	if resp := bob.Get(callback); resp.Status != http.StatusFound {
		t.Fatalf("callback of a login stored before key sets: %d %s", resp.Status, resp.Body)
	}
	if st := r.as.Stats(); st.KeyMismatches != 0 || st.RefreshGrants != 1 || r.sessionOf("bob.test").ClientKeyID != "k1" {
		t.Fatalf("server: %+v, bob's session %+v", st, r.sessionOf("bob.test"))
	}
}

func mustQueryValue(t *testing.T, rawURL, name string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(name)
}
