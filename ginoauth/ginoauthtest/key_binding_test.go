package ginoauthtest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

const keyedClientID = "https://app.test/oauth-client-metadata.json"

// keyedClient is one confidential client_id whose metadata lists several
// keys, and an indigo ClientApp per key, sharing one store (as the
// instances of one app share a database).
type keyedClient struct {
	t     *testing.T
	srv   *ginoauthtest.Server
	store *oauth.MemStore
	keys  map[string]*atcrypto.PrivateKeyP256
	apps  map[string]*oauth.ClientApp
}

func newKeyedClient(t *testing.T, srv *ginoauthtest.Server, kids ...string) *keyedClient {
	kc := &keyedClient{t: t, srv: srv, store: oauth.NewMemStore(), keys: map[string]*atcrypto.PrivateKeyP256{}, apps: map[string]*oauth.ClientApp{}}
	for _, kid := range kids {
		kc.keys[kid] = newKey(t)
		cfg := oauth.NewPublicConfig(keyedClientID, "https://app.test/oauth/callback", []string{"atproto", "transition:generic"})
		if err := cfg.SetClientSecret(kc.keys[kid], kid); err != nil {
			t.Fatal(err)
		}
		app := oauth.NewClientApp(&cfg, kc.store)
		app.Client, app.Resolver.Client, app.Dir = srv.HTTPClient(), srv.HTTPClient(), srv.Directory()
		kc.apps[kid] = app
	}
	return kc
}

// metadata is the client's metadata document publishing the given keys.
func (kc *keyedClient) metadata(kids ...string) oauth.ClientMetadata {
	md := kc.apps[kids[0]].Config.ClientMetadata()
	jwks := oauth.JWKS{}
	for _, kid := range kids {
		jwk := publicJWK(kc.t, kc.keys[kid])
		jwk.KeyID = &kid
		jwks.Keys = append(jwks.Keys, *jwk)
	}
	md.JWKS = &jwks
	return md
}

func (kc *keyedClient) register(kids ...string) {
	kc.t.Helper()
	if err := kc.srv.RegisterClient(kc.metadata(kids...)); err != nil {
		kc.t.Fatal(err)
	}
}

// The server binds a confidential session to the key of its PAR: the code
// exchange, every refresh and the revocation of its tokens must be signed
// with that key, whichever other keys the client's metadata lists; an
// assertion with another key is refused without ending the session.
func TestSessionBoundToItsClientKey(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	kc := newKeyedClient(t, srv, "k1", "k2")
	kc.register("k1", "k2")

	t.Run("code exchange", func(t *testing.T) {
		authURL, err := kc.apps["k1"].StartAuthFlow(ctx, "alice.test")
		if err != nil {
			t.Fatal(err)
		}
		redirect, err := srv.Consent(ctx, authURL, "alice.test", true)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kc.apps["k2"].ProcessCallback(ctx, mustQuery(t, redirect))
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("a code exchange signed with another key than the PAR's: %v", err)
		}
		if st := srv.Stats(); st.KeyMismatches != 1 || st.CodeGrants != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})

	sd := login(t, ctx, srv, kc.apps["k1"], alice)
	info, _ := srv.Session(sd.AccessToken)
	if info.ClientKeyID != "k1" || !info.Confidential {
		t.Fatalf("session: %+v", info)
	}

	t.Run("refresh", func(t *testing.T) {
		srv.ExpireAccessTokens()
		sess, err := kc.apps["k2"].ResumeSession(ctx, sd.AccountDID, sd.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := getSession(ctx, sess); err == nil {
			t.Fatal("a refresh signed with another key than the session's was accepted")
		}
		if st := srv.Stats(); st.KeyMismatches != 2 || st.RefreshGrants != 0 {
			t.Fatalf("stats: %+v", st)
		}
		if info, _ := srv.Session(sd.AccessToken); !info.Active || !srv.TokenActive(sd.RefreshToken) {
			t.Fatalf("the refused refresh ended the session: %+v", info)
		}
		sess, _ = kc.apps["k1"].ResumeSession(ctx, sd.AccountDID, sd.SessionID)
		if _, err := getSession(ctx, sess); err != nil {
			t.Fatalf("a refresh with the session's own key: %v", err)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		cur, _ := kc.store.GetSession(ctx, sd.AccountDID, sd.SessionID)
		revoke := func(kid string) rawResp {
			dpopKey, err := atcrypto.ParsePrivateMultibase(cur.DPoPPrivateKeyMultibase)
			if err != nil {
				t.Fatal(err)
			}
			endpoint := srv.Issuer() + "/oauth/revoke"
			proof, err := oauth.NewAuthDPoP(http.MethodPost, endpoint, srv.DPoPNonce(), dpopKey)
			if err != nil {
				t.Fatal(err)
			}
			assertion, err := kc.apps[kid].Config.NewClientAssertion(srv.Issuer())
			if err != nil {
				t.Fatal(err)
			}
			return postForm(t, srv, "/oauth/revoke", url.Values{
				"client_id": {keyedClientID}, "token": {cur.RefreshToken},
				"client_assertion_type": {oauth.ClientAssertionJWTBearer}, "client_assertion": {assertion},
			}, proof)
		}
		if r := revoke("k2"); r.status != http.StatusBadRequest || !strings.Contains(r.str("error_description"), "different key") {
			t.Fatalf("revocation signed with another key: %d %v", r.status, r.body)
		}
		if !srv.TokenActive(cur.RefreshToken) || srv.Stats().KeyMismatches != 3 {
			t.Fatalf("the refused revocation ended the session: %+v", srv.Stats())
		}
		if r := revoke("k1"); r.status != http.StatusOK || srv.TokenActive(cur.RefreshToken) {
			t.Fatalf("revocation with the session's key: %d %v", r.status, r.body)
		}
	})
}

// When the client's metadata no longer lists the key a session is bound
// to (or lists another public key under its kid), the server ends that
// session the next time it reads the metadata; sessions of the keys still
// listed, and of other clients, go on.
func TestSessionsEndWhenTheirKeyLeavesTheMetadata(t *testing.T) {
	ctx := testCtx(t)
	t.Run("registered", func(t *testing.T) {
		srv := ginoauthtest.New(t, ginoauthtest.Options{})
		alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
		bob := srv.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
		kc := newKeyedClient(t, srv, "k1", "k2")
		kc.register("k1", "k2")
		public, _ := newApp(srv)
		onK1 := login(t, ctx, srv, kc.apps["k1"], alice)
		onK2 := login(t, ctx, srv, kc.apps["k2"], bob)
		onPublic := login(t, ctx, srv, public, alice)

		kc.register("k2") // k1 left the metadata
		if info, _ := srv.Session(onK1.AccessToken); info.Active || info.EndReason != "client key removed from the client metadata" {
			t.Fatalf("k1's session: %+v", info)
		}
		for _, sd := range []*oauth.ClientSessionData{onK2, onPublic} {
			if info, _ := srv.Session(sd.AccessToken); !info.Active {
				t.Fatalf("a session whose key is still listed ended: %+v", info)
			}
		}

		// Another public key under the same kid is another key.
		kc.keys["k2"] = newKey(t)
		kc.register("k2")
		if info, _ := srv.Session(onK2.AccessToken); info.Active {
			t.Fatalf("a session of a replaced key is live: %+v", info)
		}
		if st := srv.Stats(); st.SessionsRevoked != 2 || st.ActiveSessions != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})

	t.Run("fetched", func(t *testing.T) {
		srv := ginoauthtest.New(t, ginoauthtest.Options{})
		alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
		bob := srv.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
		kc := newKeyedClient(t, srv, "k1", "k2", "k3")
		var mu sync.Mutex
		published := []string{"k1", "k2", "k3"}
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			md := kc.metadata(published...)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(md)
		}))
		defer app.Close()
		srv.SetClientMetadataClient(srv.HTTPClient())
		if err := srv.Route("https://app.test", app.URL); err != nil {
			t.Fatal(err)
		}
		onK1 := login(t, ctx, srv, kc.apps["k1"], alice)
		onK2 := login(t, ctx, srv, kc.apps["k2"], bob)

		mu.Lock()
		published = []string{"k2", "k3"}
		mu.Unlock()
		if n, err := srv.RefreshClientMetadata(ctx, keyedClientID); err != nil || n != 1 {
			t.Fatalf("RefreshClientMetadata: %d, %v", n, err)
		}
		if info, _ := srv.Session(onK1.AccessToken); info.Active {
			t.Fatalf("k1's session: %+v", info)
		}

		// The server reads the document again at every request of the
		// client: a login with k3 ends k2's session once k2 is gone.
		mu.Lock()
		published = []string{"k3"}
		mu.Unlock()
		login(t, ctx, srv, kc.apps["k3"], alice)
		if info, _ := srv.Session(onK2.AccessToken); info.Active || info.EndReason != "client key removed from the client metadata" {
			t.Fatalf("k2's session: %+v", info)
		}
		if _, err := srv.RefreshClientMetadata(ctx, "http://localhost"); err == nil {
			t.Fatal("RefreshClientMetadata of a loopback client")
		}
	})
}
