package ginoauthtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

func TestMetadataPassesIndigoValidation(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	r := oauth.NewResolver()
	r.Client = srv.HTTPClient()
	as, err := r.ResolveAuthServerURL(ctx, "https://pds.test")
	if err != nil {
		t.Fatal(err)
	}
	if as != "https://pds.test" || srv.Issuer() != as {
		t.Fatalf("auth server %q, issuer %q", as, srv.Issuer())
	}
	md, err := r.ResolveAuthServerMetadata(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	if md.RevocationEndpoint != "https://pds.test/oauth/revoke" || md.PushedAuthorizationRequestEndpoint != "https://pds.test/oauth/par" {
		t.Fatalf("endpoints: %+v", md)
	}
}

func TestHTTPClientReachesOnlyTheServer(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	c := srv.HTTPClient()
	for _, u := range []string{"https://example.com/", "http://pds.test/xrpc/_health", "https://pds.test:8443/xrpc/_health", "https://app.test/"} {
		_, err := c.Get(u)
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("GET %s: want a refusal, got %v", u, err)
		}
	}
	resp, err := c.Get("https://pds.test/xrpc/_health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Host)) // the handler sees the public host
	}))
	defer app.Close()
	if err := srv.Route("https://app.test", app.URL); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Get("https://app.test/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "app.test" {
		t.Fatalf("Host seen by the routed handler: %q", b)
	}
}

func TestLoginAndPDSCalls(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice", DisplayName: "Alice"})
	if alice.Handle != "alice.test" || !strings.HasPrefix(alice.DID.String(), "did:plc:") || len(alice.DID.String()) != len("did:plc:")+24 {
		t.Fatalf("account: %+v", alice)
	}
	app, store := newApp(srv)
	sd := login(t, ctx, srv, app, alice)
	if sd.AccountDID != alice.DID || sd.HostURL != "https://pds.test" || strings.Join(sd.Scopes, " ") != "atproto transition:generic" {
		t.Fatalf("session data: %+v", sd)
	}
	info, ok := srv.Session(sd.AccessToken)
	if !ok || !info.Active || info.DID != alice.DID || info.Confidential || info.RefreshToken != sd.RefreshToken {
		t.Fatalf("server session: %+v %v", info, ok)
	}
	if got := info.Expires.Sub(info.Created); got != ginoauthtest.DefaultPublicSessionLifetime {
		t.Fatalf("public session lifetime %v", got)
	}

	sess, err := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	me, err := getSession(ctx, sess)
	if err != nil || me.DID != alice.DID.String() || me.Handle != "alice.test" || !me.Active {
		t.Fatalf("getSession: %+v %v", me, err)
	}

	api := sess.APIClient()
	var created struct{ URI, CID string }
	rec := map[string]any{"$type": "app.bsky.feed.post", "text": "hello", "createdAt": "2026-01-01T00:00:00Z"}
	if err := api.Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": alice.DID, "collection": "app.bsky.feed.post", "record": rec}, &created); err != nil {
		t.Fatal(err)
	}
	aturi, err := syntax.ParseATURI(created.URI)
	if err != nil || aturi.Authority().String() != alice.DID.String() || aturi.Collection() != "app.bsky.feed.post" {
		t.Fatalf("created %+v: %v", created, err)
	}
	if _, err := syntax.ParseCID(created.CID); err != nil {
		t.Fatalf("cid %q: %v", created.CID, err)
	}
	var got struct {
		URI   string
		CID   string
		Value map[string]any
	}
	params := map[string]any{"repo": "alice.test", "collection": "app.bsky.feed.post", "rkey": aturi.RecordKey().String()}
	if err := api.Get(ctx, "com.atproto.repo.getRecord", params, &got); err != nil {
		t.Fatal(err)
	}
	if got.URI != created.URI || got.CID != created.CID || got.Value["text"] != "hello" {
		t.Fatalf("getRecord: %+v", got)
	}
	if v, ok := srv.Record(created.URI); !ok || !strings.Contains(string(v), "hello") {
		t.Fatalf("Record: %s %v", v, ok)
	}
	// A second record, then list newest first.
	if err := api.Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": alice.DID, "collection": "app.bsky.feed.post", "record": map[string]any{"text": "second"}}, nil); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Records []struct {
			URI   string
			Value map[string]any
		}
	}
	if err := api.Get(ctx, "com.atproto.repo.listRecords", map[string]any{"repo": alice.DID.String(), "collection": "app.bsky.feed.post"}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Records) != 2 || list.Records[0].Value["text"] != "second" {
		t.Fatalf("listRecords: %+v", list)
	}
	if err := api.Post(ctx, "com.atproto.repo.deleteRecord", map[string]any{"repo": alice.DID, "collection": "app.bsky.feed.post", "rkey": aturi.RecordKey().String()}, nil); err != nil {
		t.Fatal(err)
	}
	err = api.Get(ctx, "com.atproto.repo.getRecord", params, nil)
	var apiErr *atclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Name != "RecordNotFound" {
		t.Fatalf("getRecord after delete: %v", err)
	}
	var profile struct{ DID, Handle, DisplayName string }
	if err := api.Get(ctx, "app.bsky.actor.getProfile", map[string]any{"actor": "alice.test"}, &profile); err != nil || profile.DisplayName != "Alice" || profile.DID != alice.DID.String() {
		t.Fatalf("getProfile: %+v %v", profile, err)
	}

	st := srv.Stats()
	if st.PARs != 1 || st.Approvals != 1 || st.CodeGrants != 1 || st.RefreshGrants != 0 || st.ActiveSessions != 1 || st.TokenErrors != 0 {
		t.Fatalf("stats: %+v", st)
	}
	// The session data indigo stored is what the server considers current.
	stored, _ := store.GetSession(ctx, sd.AccountDID, sd.SessionID)
	if !srv.TokenActive(stored.AccessToken) || !srv.TokenActive(stored.RefreshToken) {
		t.Fatal("stored tokens not active")
	}
}

func TestWriteNeedsScope(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	bob := srv.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	app, _ := newApp(srv, "atproto") // no transition:generic, no repo scope
	sd := login(t, ctx, srv, app, bob)
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err != nil {
		t.Fatalf("getSession with atproto only: %v", err)
	}
	err := sess.APIClient().Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": bob.DID, "collection": "app.bsky.feed.post", "record": map[string]any{"text": "x"}}, nil)
	var apiErr *atclient.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Name != "InsufficientScope" {
		t.Fatalf("createRecord without a write scope: %v", err)
	}
}

func TestRefreshAfterExpiry(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, store := newApp(srv)
	sd := login(t, ctx, srv, app, alice)
	// Make the nonces indigo holds stale too, so the refresh also goes
	// through a use_dpop_nonce round.
	srv.RotateDPoPNonce()
	srv.RotateDPoPNonce()
	srv.ExpireAccessTokens()
	if srv.TokenActive(sd.AccessToken) {
		t.Fatal("access token still active after ExpireAccessTokens")
	}

	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err != nil {
		t.Fatalf("getSession with an expired access token: %v", err)
	}
	st := srv.Stats()
	if st.RefreshGrants != 1 || st.NonceChallenges < 2 {
		t.Fatalf("stats: %+v", st)
	}
	stored, _ := store.GetSession(ctx, sd.AccountDID, sd.SessionID)
	if stored.AccessToken == sd.AccessToken || stored.RefreshToken == sd.RefreshToken {
		t.Fatal("rotated tokens were not persisted")
	}
	info, _ := srv.Session(stored.AccessToken)
	if info.AccessToken != stored.AccessToken || info.RefreshToken != stored.RefreshToken || info.Refreshes != 1 || !info.Active {
		t.Fatalf("server session: %+v", info)
	}
	// Only the newest tokens work.
	if srv.TokenActive(sd.AccessToken) || srv.TokenActive(sd.RefreshToken) || srv.Revoked(sd.RefreshToken) {
		t.Fatal("rotated-out tokens: want inactive, not revoked")
	}
}

func TestRefreshTokenReplayKillsSession(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, store := newApp(srv)
	sd := login(t, ctx, srv, app, alice)
	snapshot := *sd // what a second app instance might still hold

	srv.ExpireAccessTokens()
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	current, _ := store.GetSession(ctx, sd.AccountDID, sd.SessionID)

	// The stale copy refreshes with the rotated-out refresh token.
	key, err := atcrypto.ParsePrivateMultibase(snapshot.DPoPPrivateKeyMultibase)
	if err != nil {
		t.Fatal(err)
	}
	stale := &oauth.ClientSession{Client: app.Client, Config: app.Config, Data: &snapshot, DPoPPrivateKey: key}
	_, err = getSession(ctx, stale)
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("replayed refresh: want invalid_grant, got %v", err)
	}
	st := srv.Stats()
	if st.ReplaysDetected != 1 || st.RefreshGrants != 1 || st.ActiveSessions != 0 {
		t.Fatalf("stats: %+v", st)
	}
	info, _ := srv.Session(current.AccessToken)
	if info.Active || info.EndReason != "refresh token replayed" || !srv.Revoked(current.RefreshToken) {
		t.Fatalf("session after replay: %+v", info)
	}
	// The legitimate, current tokens died with the session.
	sess, _ = app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err == nil {
		t.Fatal("current session still works after a replay")
	}
	r := pdsGet(t, srv, "com.atproto.server.getSession", "DPoP "+current.AccessToken, makeProof(t, proof{key: key, htm: "GET", htu: "https://pds.test/xrpc/com.atproto.server.getSession", nonce: srv.DPoPNonce(), ath: oauth.S256CodeChallenge(current.AccessToken)}))
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("current access token after replay: %d %v", r.status, r.header)
	}
}

func TestLogoutRevokes(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv)
	sd := login(t, ctx, srv, app, alice)
	data := *sd
	if err := app.Logout(ctx, sd.AccountDID, sd.SessionID); err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()
	if st.Revocations != 2 || st.SessionsRevoked != 1 || st.ActiveSessions != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if !srv.Revoked(data.AccessToken) || !srv.Revoked(data.RefreshToken) {
		t.Fatal("tokens not revoked")
	}
	key, _ := atcrypto.ParsePrivateMultibase(data.DPoPPrivateKeyMultibase)
	r := pdsGet(t, srv, "com.atproto.server.getSession", "DPoP "+data.AccessToken, makeProof(t, proof{key: key, htm: "GET", htu: "https://pds.test/xrpc/com.atproto.server.getSession", nonce: srv.DPoPNonce(), ath: oauth.S256CodeChallenge(data.AccessToken)}))
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("revoked access token: %d %v %v", r.status, r.header, r.body)
	}
	stale := &oauth.ClientSession{Client: app.Client, Config: app.Config, Data: &data, DPoPPrivateKey: key}
	if _, err := stale.RefreshTokens(ctx); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("refresh after revocation: %v", err)
	}
}

func TestDeny(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv)
	authURL, err := app.StartAuthFlow(ctx, "alice.test")
	if err != nil {
		t.Fatal(err)
	}
	redirect, err := srv.Consent(ctx, authURL, "alice.test", false)
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, redirect)
	if q.Get("error") != "access_denied" || q.Get("iss") != "https://pds.test" || q.Get("code") != "" {
		t.Fatalf("deny redirect: %s", redirect)
	}
	_, err = app.ProcessCallback(ctx, q)
	var cbErr *oauth.AuthRequestCallbackError
	if !errors.As(err, &cbErr) || cbErr.ErrorCode != "access_denied" {
		t.Fatalf("ProcessCallback: %v", err)
	}
	if st := srv.Stats(); st.Denials != 1 || st.CodeGrants != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestTamperedIssFails(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv)
	authURL, _ := app.StartAuthFlow(ctx, "alice.test")
	redirect, err := srv.Consent(ctx, authURL, "alice.test", true)
	if err != nil {
		t.Fatal(err)
	}
	q := mustQuery(t, redirect)
	good := q.Get("iss")
	q.Set("iss", "https://evil.test")
	if _, err := app.ProcessCallback(ctx, q); err == nil {
		t.Fatal("ProcessCallback accepted a foreign iss")
	}
	if srv.Stats().CodeGrants != 0 {
		t.Fatal("code exchanged despite a foreign iss")
	}
	q.Set("iss", good)
	if _, err := app.ProcessCallback(ctx, q); err != nil {
		t.Fatalf("untampered callback: %v", err)
	}
}

func TestConfidentialClient(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})

	cfg := oauth.NewPublicConfig("https://app.test/oauth-client-metadata.json", "https://app.test/oauth/callback", []string{"atproto", "transition:generic"})
	if err := cfg.SetClientSecret(newKey(t), "kid1"); err != nil {
		t.Fatal(err)
	}
	md := cfg.ClientMetadata()
	jwks := cfg.PublicJWKS()
	md.JWKS = &jwks
	name := "Test App"
	md.ClientName = &name
	if err := srv.RegisterClient(md); err != nil {
		t.Fatal(err)
	}
	store := oauth.NewMemStore()
	app := oauth.NewClientApp(&cfg, store)
	app.Client, app.Resolver.Client, app.Dir = srv.HTTPClient(), srv.HTTPClient(), srv.Directory()

	sd := login(t, ctx, srv, app, alice)
	info, _ := srv.Session(sd.AccessToken)
	if !info.Confidential || info.Expires.Sub(info.Created) != ginoauthtest.DefaultConfidentialSessionLifetime || info.ClientID != cfg.ClientID {
		t.Fatalf("session: %+v", info)
	}
	srv.ExpireAccessTokens()
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err != nil {
		t.Fatalf("refresh as a confidential client: %v", err)
	}
	if err := app.Logout(ctx, sd.AccountDID, sd.SessionID); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.RefreshGrants != 1 || st.SessionsRevoked != 1 || st.TokenErrors != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestFetchedClientMetadata(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	cfg := oauth.NewPublicConfig("https://app.test/oauth-client-metadata.json", "https://app.test/oauth/callback", []string{"atproto"})
	if err := cfg.SetClientSecret(newKey(t), "k"); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	var mu sync.Mutex
	appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth-client-metadata.json" || r.Host != "app.test" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		fetches++
		mu.Unlock()
		md := cfg.ClientMetadata()
		jwks := cfg.PublicJWKS()
		md.JWKS = &jwks
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(md)
	}))
	defer appSrv.Close()
	if err := srv.Route("https://app.test", appSrv.URL); err != nil {
		t.Fatal(err)
	}
	srv.SetClientMetadataClient(srv.HTTPClient())
	app := oauth.NewClientApp(&cfg, oauth.NewMemStore())
	app.Client, app.Resolver.Client, app.Dir = srv.HTTPClient(), srv.HTTPClient(), srv.Directory()
	sd := login(t, ctx, srv, app, alice)
	mu.Lock()
	defer mu.Unlock()
	if fetches == 0 || sd.AccountDID != alice.DID {
		t.Fatalf("fetches %d", fetches)
	}
}

func TestAutoApprove(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{AutoApprove: true})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	bob := srv.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	app, _ := newApp(srv)
	authURL, err := app.StartAuthFlow(ctx, "bob.test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := browser().Get(srv.RewriteForBrowser(authURL))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, callbackURL+"?") {
		t.Fatalf("auto-approve: %d %q", resp.StatusCode, loc)
	}
	sd, err := app.ProcessCallback(ctx, mustQuery(t, loc))
	if err != nil || sd.AccountDID != bob.DID {
		t.Fatalf("ProcessCallback: %v", err)
	}
}

func TestSessionLifetimeCap(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv)
	sd := login(t, ctx, srv, app, alice)
	srv.Advance(ginoauthtest.DefaultPublicSessionLifetime + time.Hour)
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("getSession past the session cap: %v", err)
	}
	info, _ := srv.Session(sd.RefreshToken)
	if info.Active || info.EndReason != "session expired" {
		t.Fatalf("session: %+v", info)
	}
}

func TestRevokeAllAndSessions(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv)
	a := login(t, ctx, srv, app, alice)
	b := login(t, ctx, srv, app, alice)
	if got := len(srv.Sessions("alice.test")); got != 2 {
		t.Fatalf("sessions: %d", got)
	}
	if n := srv.RevokeAll(alice.DID.String()); n != 2 {
		t.Fatalf("RevokeAll: %d", n)
	}
	for _, sd := range []*oauth.ClientSessionData{a, b} {
		sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
		if _, err := getSession(ctx, sess); err == nil {
			t.Fatal("revoked session still works")
		}
	}
	for _, info := range srv.Sessions(alice.Handle.String()) {
		if info.Active || info.EndReason != "revoked" {
			t.Fatalf("session: %+v", info)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	app, _ := newApp(srv)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 4 {
		acct := srv.CreateAccount(ginoauthtest.Account{Handle: syntax.Handle("user" + string(rune('a'+i)) + ".test")})
		sd := login(t, ctx, srv, app, acct)
		sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := getSession(ctx, sess); err != nil {
					errs <- err
				}
				if err := sess.APIClient().Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": acct.DID, "collection": "app.bsky.feed.like", "record": map[string]any{}}, nil); err != nil {
					errs <- err
				}
				_ = srv.Stats()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := srv.Stats(); st.CodeGrants != 4 || st.ActiveSessions != 4 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRewriteForBrowser(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	got := srv.RewriteForBrowser("https://pds.test/oauth/authorize?a=b")
	if got != srv.URL()+"/oauth/authorize?a=b" {
		t.Fatalf("rewrite: %s", got)
	}
	for _, u := range []string{"https://pds.testing/x", "https://other.test/oauth/authorize", "http://127.0.0.1/callback"} {
		if srv.RewriteForBrowser(u) != u {
			t.Errorf("%s was rewritten", u)
		}
	}
	srv2 := ginoauthtest.New(t, ginoauthtest.Options{Host: "as.example", BrowserURL: "http://localhost:9999/"})
	if got := srv2.RewriteForBrowser("https://as.example/oauth/authorize?x=1"); got != "http://localhost:9999/oauth/authorize?x=1" {
		t.Fatalf("rewrite with WithBrowserURL: %s", got)
	}
	if srv2.Issuer() != "https://as.example" {
		t.Fatal(srv2.Issuer())
	}
}

func TestLogsNeverContainSecrets(t *testing.T) {
	ctx := testCtx(t)
	var buf apptest.LogBuffer
	srv := ginoauthtest.New(t, ginoauthtest.Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, store := newApp(srv)
	authURL, _ := app.StartAuthFlow(ctx, "alice.test")
	redirect, err := srv.Consent(ctx, authURL, "alice.test", true)
	if err != nil {
		t.Fatal(err)
	}
	code := mustQuery(t, redirect).Get("code")
	sd, err := app.ProcessCallback(ctx, mustQuery(t, redirect))
	if err != nil {
		t.Fatal(err)
	}
	srv.ExpireAccessTokens()
	sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if _, err := getSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	stored, _ := store.GetSession(ctx, alice.DID, sd.SessionID)
	_ = app.Logout(ctx, alice.DID, sd.SessionID)
	logs := buf.String()
	if !strings.Contains(logs, "tokens refreshed") || !strings.Contains(logs, "session revoked") {
		t.Fatalf("expected events missing from logs:\n%s", logs)
	}
	for _, secret := range []string{code, sd.AccessToken, sd.RefreshToken, stored.AccessToken, stored.RefreshToken} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a secret was logged:\n%s", logs)
		}
	}
}

func TestCreateAccount(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	a := srv.CreateAccount(ginoauthtest.Account{Handle: "Carol.Test", DID: "did:web:carol.test"})
	if a.Handle != "carol.test" || a.DID != "did:web:carol.test" {
		t.Fatalf("%+v", a)
	}
	if got, ok := srv.Account("@CAROL.test"); !ok || got != a {
		t.Fatalf("lookup by handle: %+v %v", got, ok)
	}
	ident, err := srv.Directory().LookupHandle(context.Background(), "carol.test")
	if err != nil || ident.DID != a.DID || ident.PDSEndpoint() != "https://pds.test" {
		t.Fatalf("directory: %+v %v", ident, err)
	}
	if _, err := srv.Directory().LookupHandle(context.Background(), "nobody.test"); err == nil {
		t.Fatal("unknown handle resolved")
	}
	for _, bad := range []func(){
		func() { srv.CreateAccount(ginoauthtest.Account{Handle: "carol.test"}) },
		func() { srv.CreateAccount(ginoauthtest.Account{Handle: "dave.test", DID: "did:web:carol.test"}) },
		func() { srv.CreateAccount(ginoauthtest.Account{Handle: "not a handle"}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			bad()
		}()
	}
	if n := len(srv.Accounts()); n != 1 {
		t.Fatalf("%d accounts", n)
	}
}
