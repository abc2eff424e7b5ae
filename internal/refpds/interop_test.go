package refpds_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/internal/refpds"
)

// callbackURL is the client's redirect URI. Nothing listens there: the test
// hands the redirect's query straight to ProcessCallback. The reference
// server accepts loopback redirect URIs only with an IP (127.0.0.1), not
// "localhost".
const callbackURL = "http://127.0.0.1:8787/oauth/callback"

func newApp(env *refpds.Env) (*oauth.ClientApp, *oauth.ClientConfig) {
	config := oauth.NewLocalhostConfig(callbackURL, []string{"atproto", "transition:generic"})
	app := oauth.NewClientApp(&config, oauth.NewMemStore())
	app.Client = env.HTTPClient()
	app.Resolver.Client = env.HTTPClient()
	app.Dir = env.Directory()
	return app, &config
}

// login runs StartAuthFlow, the user's sign-in and consent, and
// ProcessCallback.
func login(t *testing.T, ctx context.Context, env *refpds.Env, app *oauth.ClientApp, acct refpds.Account) (*oauth.ClientSessionData, string) {
	t.Helper()
	authURL, err := app.StartAuthFlow(ctx, acct.Handle.String())
	if err != nil {
		t.Fatalf("StartAuthFlow(%s): %v", acct.Handle, err)
	}
	if !strings.HasPrefix(authURL, env.Issuer+"/oauth/authorize?") {
		t.Fatalf("authorize URL %q is not on %s", authURL, env.Issuer)
	}
	redirectTo, err := env.SignInAndConsent(ctx, authURL, acct.Handle.String(), acct.Password)
	if err != nil {
		t.Fatalf("SignInAndConsent: %v", err)
	}
	q := callbackQuery(t, redirectTo)
	if q.Get("code") == "" || q.Get("state") == "" || q.Get("iss") != env.Issuer {
		t.Fatalf("callback lacks code/state or iss=%q (want %s); keys: %v", q.Get("iss"), env.Issuer, keys(q))
	}
	data, err := app.ProcessCallback(ctx, q)
	if err != nil {
		t.Fatalf("ProcessCallback: %v", err)
	}
	return data, authURL
}

func callbackQuery(t *testing.T, redirectTo string) url.Values {
	t.Helper()
	if !strings.HasPrefix(redirectTo, callbackURL+"?") {
		t.Fatalf("redirect goes to %q, want %s?...", strings.SplitN(redirectTo, "?", 2)[0], callbackURL)
	}
	u, err := url.Parse(redirectTo)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func keys(q url.Values) []string {
	var ks []string
	for k := range q {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestInteropIndigoReferencePDS documents what the reference PDS does with
// indigo's OAuth client alone: login, authenticated XRPC calls, refresh,
// replay detection, logout and revocation. Skipped unless the server runs
// (scripts/refpds/start.sh).
func TestInteropIndigoReferencePDS(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	alice, err := env.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	app, config := newApp(env)

	// 1. Web login: PAR + PKCE + DPoP, sign-in and consent, token exchange.
	data, authURL := login(t, ctx, env, app, alice)
	t.Logf("logged in as %s", data.AccountDID)
	if data.AccountDID != alice.DID {
		t.Fatalf("session DID %s, want %s", data.AccountDID, alice.DID)
	}
	if data.HostURL != env.Issuer || data.AuthServerURL != env.Issuer {
		t.Fatalf("host %q / auth server %q, want %s", data.HostURL, data.AuthServerURL, env.Issuer)
	}
	if !slices.Contains(data.Scopes, "atproto") || !slices.Contains(data.Scopes, "transition:generic") {
		t.Fatalf("granted scopes %v", data.Scopes)
	}
	if data.AuthServerRevocationEndpoint == "" {
		t.Fatal("the server advertises no revocation endpoint")
	}

	// Once its code is exchanged, the authorize URL is gone: opening it again
	// shows an error page.
	_, err = env.SignInAndConsent(ctx, authURL, alice.Handle.String(), alice.Password)
	var se *refpds.ServerError
	if !errors.As(err, &se) || se.Status != 400 || se.Description != "Unknown request_uri" {
		t.Fatalf("reopening a used authorize URL: %v, want HTTP 400 Unknown request_uri", err)
	}

	// 2. Authenticated XRPC calls through the session.
	sess, err := app.ResumeSession(ctx, data.AccountDID, data.SessionID)
	if err != nil {
		t.Fatalf("ResumeSession: %v", err)
	}
	api := sess.APIClient()
	var who struct {
		DID    string `json:"did"`
		Handle string `json:"handle"`
	}
	if err := api.Get(ctx, syntax.NSID("com.atproto.server.getSession"), nil, &who); err != nil {
		t.Fatalf("getSession: %v", err)
	}
	if who.DID != alice.DID.String() || who.Handle != alice.Handle.String() {
		t.Fatalf("getSession = %s %s, want %s %s", who.DID, who.Handle, alice.DID, alice.Handle)
	}
	text := "hello from the refpds interop test " + time.Now().UTC().Format(time.RFC3339Nano)
	var created struct {
		URI string `json:"uri"`
		CID string `json:"cid"`
	}
	err = api.Post(ctx, syntax.NSID("com.atproto.repo.createRecord"), map[string]any{
		"repo":       alice.DID.String(),
		"collection": "app.bsky.feed.post",
		"record": map[string]any{
			"$type":     "app.bsky.feed.post",
			"text":      text,
			"createdAt": time.Now().UTC().Format(time.RFC3339),
		},
	}, &created)
	if err != nil {
		t.Fatalf("createRecord: %v", err)
	}
	aturi, err := syntax.ParseATURI(created.URI)
	if err != nil {
		t.Fatalf("createRecord uri %q: %v", created.URI, err)
	}
	var got struct {
		Value struct {
			Text string `json:"text"`
		} `json:"value"`
	}
	err = api.Get(ctx, syntax.NSID("com.atproto.repo.getRecord"), map[string]any{
		"repo":       alice.DID.String(),
		"collection": "app.bsky.feed.post",
		"rkey":       aturi.RecordKey().String(),
	}, &got)
	if err != nil {
		t.Fatalf("getRecord: %v", err)
	}
	if got.Value.Text != text {
		t.Fatalf("getRecord text %q, want %q", got.Value.Text, text)
	}

	// 3. Refresh rotates both tokens; the new access token works.
	before := *sess.Data
	if _, err := sess.RefreshTokens(ctx); err != nil {
		t.Fatalf("RefreshTokens: %v", err)
	}
	if sess.Data.RefreshToken == before.RefreshToken || sess.Data.AccessToken == before.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	if err := api.Get(ctx, syntax.NSID("com.atproto.server.getSession"), nil, &who); err != nil {
		t.Fatalf("getSession after refresh: %v", err)
	}
	stored, err := app.Store.GetSession(ctx, data.AccountDID, data.SessionID)
	if err != nil || stored.RefreshToken != sess.Data.RefreshToken {
		t.Fatalf("refreshed tokens were not persisted to the store (err %v)", err)
	}
	// The previous access token dies with the refresh (the reference server
	// checks access tokens against its token store).
	if p, err := env.ProbeAccessToken(ctx, before); err != nil {
		t.Fatal(err)
	} else if p.Status != 401 || p.Error != "invalid_token" {
		t.Fatalf("previous access token right after refresh: %v, want 401 invalid_token", p)
	}

	// 4. Replaying the rotated-out refresh token is detected, and the server
	// deletes the whole session: the current tokens die too.
	replay, err := env.ProbeRefreshToken(ctx, config, before)
	if err != nil {
		t.Fatal(err)
	}
	if replay.Status != 400 || replay.Error != "invalid_grant" {
		t.Fatalf("replayed refresh token: %v, want 400 invalid_grant", replay)
	}
	t.Logf("replayed refresh token: %v", replay)
	current := *sess.Data
	if p, err := env.ProbeAccessToken(ctx, current); err != nil {
		t.Fatal(err)
	} else if p.Status != 401 || p.Error == "" {
		t.Fatalf("current access token after the replay: %v, want 401", p)
	} else {
		t.Logf("current access token after the replay: %v (WWW-Authenticate: %s)", p, p.WWWAuthenticate)
	}
	// indigo's client sees the 401 invalid_token, tries to refresh, and fails.
	err = api.Get(ctx, syntax.NSID("com.atproto.server.getSession"), nil, &who)
	if err == nil {
		t.Fatal("getSession through indigo after the replay succeeded")
	}
	t.Logf("indigo getSession after the replay: %v", err)
	if p, err := env.ProbeRefreshToken(ctx, config, *sess.Data); err != nil {
		t.Fatal(err)
	} else if p.Status != 400 || p.Error != "invalid_grant" {
		t.Fatalf("current refresh token after the replay: %v, want 400 invalid_grant", p)
	}

	// 5. A second login, then Logout: the server revokes both tokens.
	data2, _ := login(t, ctx, env, app, alice)
	if data2.SessionID == data.SessionID {
		t.Fatal("second login reused the session id")
	}
	snap := *data2
	if p, err := env.ProbeAccessToken(ctx, snap); err != nil || !p.OK() {
		t.Fatalf("fresh access token: %v %v", p, err)
	}
	if err := app.Logout(ctx, data2.AccountDID, data2.SessionID); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := app.Store.GetSession(ctx, data2.AccountDID, data2.SessionID); err == nil {
		t.Fatal("Logout left the session in the client store")
	}
	if p, err := env.ProbeAccessToken(ctx, snap); err != nil {
		t.Fatal(err)
	} else if p.Status != 401 || p.Error != "invalid_token" {
		t.Fatalf("access token after Logout: %v, want 401 invalid_token", p)
	} else {
		t.Logf("access token after Logout: %v", p)
	}
	if p, err := env.ProbeRefreshToken(ctx, config, snap); err != nil {
		t.Fatal(err)
	} else if p.Status != 400 || p.Error != "invalid_grant" {
		t.Fatalf("refresh token after Logout: %v, want 400 invalid_grant", p)
	} else {
		t.Logf("refresh token after Logout: %v", p)
	}
}

// TestInteropWrongPasswordThenRetry: a wrong password on the login page is
// an error answer; the same browser can then sign in and consent.
func TestInteropWrongPasswordThenRetry(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := env.Account("bob")
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(env)
	authURL, err := app.StartAuthFlow(ctx, bob.Handle.String())
	if err != nil {
		t.Fatalf("StartAuthFlow: %v", err)
	}
	browser := env.NewBrowser()
	_, err = browser.SignInAndConsent(ctx, authURL, bob.Handle.String(), "wrong-password")
	var se *refpds.ServerError
	if !errors.As(err, &se) || se.Step != "sign-in" || se.Status != 400 || se.Description != "Invalid identifier or password" {
		t.Fatalf("wrong password: %v, want a sign-in HTTP 400 Invalid identifier or password", err)
	}
	redirectTo, err := browser.SignInAndConsent(ctx, authURL, bob.Handle.String(), bob.Password)
	if err != nil {
		t.Fatalf("retry with the right password: %v", err)
	}
	data, err := app.ProcessCallback(ctx, callbackQuery(t, redirectTo))
	if err != nil {
		t.Fatalf("ProcessCallback: %v", err)
	}
	if data.AccountDID != bob.DID {
		t.Fatalf("session DID %s, want %s", data.AccountDID, bob.DID)
	}
}

// TestInteropReject: the user denies; the client gets access_denied.
func TestInteropReject(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := env.Account("bob")
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(env)
	authURL, err := app.StartAuthFlow(ctx, bob.Handle.String())
	if err != nil {
		t.Fatalf("StartAuthFlow: %v", err)
	}
	redirectTo, err := env.SignInAndReject(ctx, authURL, "", "")
	if err != nil {
		t.Fatalf("SignInAndReject: %v", err)
	}
	q := callbackQuery(t, redirectTo)
	if q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("error_description") != "The user rejected the request" {
		t.Fatalf("reject gave keys %v error=%q (%s), want access_denied", keys(q), q.Get("error"), q.Get("error_description"))
	}
	_, err = app.ProcessCallback(ctx, q)
	var cbErr *oauth.AuthRequestCallbackError
	if !errors.As(err, &cbErr) || cbErr.ErrorCode != "access_denied" {
		t.Fatalf("ProcessCallback after reject: %v, want AuthRequestCallbackError access_denied", err)
	}
}

// TestInteropOtherDevice: an authorization request belongs to the browser
// that opened it first; another browser is sent back with access_denied.
func TestInteropOtherDevice(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := env.Account("bob")
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(env)
	authURL, err := app.StartAuthFlow(ctx, bob.Handle.String())
	if err != nil {
		t.Fatalf("StartAuthFlow: %v", err)
	}
	// The first browser opens the page (and fails to sign in).
	if _, err := env.NewBrowser().SignInAndConsent(ctx, authURL, bob.Handle.String(), "wrong-password"); err == nil {
		t.Fatal("wrong password accepted")
	}
	redirectTo, err := env.NewBrowser().SignInAndConsent(ctx, authURL, bob.Handle.String(), bob.Password)
	if err != nil {
		t.Fatalf("second browser: %v", err)
	}
	q := callbackQuery(t, redirectTo)
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("second browser: keys %v error=%q, want access_denied", keys(q), q.Get("error"))
	}
	t.Logf("second browser: error=%s (%s)", q.Get("error"), q.Get("error_description"))
}

// TestInteropCreateAccount checks that tests can add their own accounts.
func TestInteropCreateAccount(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "u" + strings.ToLower(syntax.NewTIDNow(0).String())
	acct, err := env.CreateAccount(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(env) // after CreateAccount: its directory knows the account
	data, _ := login(t, ctx, env, app, acct)
	if data.AccountDID != acct.DID {
		t.Fatalf("session DID %s, want %s", data.AccountDID, acct.DID)
	}
}

// TestInteropAuthorizeURLReopened: opening the authorize URL a second time
// after consent but before the client exchanged the code (a double click, a
// back button) sends the browser to the client with access_denied, and the
// server also voids the first code.
func TestInteropAuthorizeURLReopened(t *testing.T) {
	env := refpds.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, err := env.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(env)
	authURL, err := app.StartAuthFlow(ctx, alice.Handle.String())
	if err != nil {
		t.Fatal(err)
	}
	browser := env.NewBrowser()
	first, err := browser.SignInAndConsent(ctx, authURL, alice.Handle.String(), alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	second, err := browser.SignInAndConsent(ctx, authURL, alice.Handle.String(), alice.Password)
	if err != nil {
		t.Fatalf("second consent: %v", err)
	}
	q := callbackQuery(t, second)
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("second consent: keys %v error=%q, want access_denied", keys(q), q.Get("error"))
	}
	t.Logf("second consent: error=%s (%s)", q.Get("error"), q.Get("error_description"))
	_, err = app.ProcessCallback(ctx, callbackQuery(t, first))
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("first code after the second consent: %v, want invalid_grant", err)
	}
}
