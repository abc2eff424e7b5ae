package ginoauthtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

// pdsPost calls POST https://<host>/xrpc/<nsid> with a DPoP-bound access
// token and a valid proof by key.
func pdsPost(t *testing.T, srv *ginoauthtest.Server, key atcrypto.PrivateKey, at, nsid string, body any) rawResp {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.Issuer()+"/xrpc/"+nsid, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "DPoP "+at)
	req.Header.Set("DPoP", makeProof(t, proof{key: key, htm: "POST", htu: srv.Issuer() + "/xrpc/" + nsid, nonce: srv.DPoPNonce(), ath: oauth.S256CodeChallenge(at)}))
	return do(t, srv.HTTPClient(), req)
}

// writeAs tries one repo write and returns the XRPC answer.
func writeAs(t *testing.T, f *rawFlow, at string, did syntax.DID, nsid, collection string) rawResp {
	t.Helper()
	body := map[string]any{"repo": did, "collection": collection, "record": map[string]any{"text": "x"}}
	switch nsid {
	case "com.atproto.repo.deleteRecord":
		body = map[string]any{"repo": did, "collection": collection, "rkey": "3kaaaaaaaaaaa"}
	case "com.atproto.repo.putRecord":
		body["rkey"] = "self"
	}
	return pdsPost(t, f.srv, f.key, at, nsid, body)
}

// The write check of the PDS follows the granted granular scopes: the
// collection, the action, and nothing more.
func TestGranularRepoScope(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app, _ := newApp(srv, "atproto", "repo:com.example.note?action=create")
	sd := login(t, ctx, srv, app, alice)
	if got := strings.Join(sd.Scopes, " "); got != "atproto repo:com.example.note?action=create" {
		t.Fatalf("granted scopes %q", got)
	}
	sess, err := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	api := sess.APIClient()
	var created struct{ URI string }
	if err := api.Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": alice.DID, "collection": "com.example.note", "record": map[string]any{"text": "hi"}}, &created); err != nil {
		t.Fatalf("create com.example.note: %v", err)
	}
	aturi, err := syntax.ParseATURI(created.URI)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(what string, err error, missing string) {
		t.Helper()
		var apiErr *atclient.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || apiErr.Name != "InsufficientScope" ||
			apiErr.Message != `Missing required scope "`+missing+`"` {
			t.Fatalf("%s: want 403 InsufficientScope naming %s, got %v", what, missing, err)
		}
	}
	err = api.Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": alice.DID, "collection": "app.bsky.feed.post", "record": map[string]any{"text": "x"}}, nil)
	refused("create app.bsky.feed.post", err, "repo:app.bsky.feed.post?action=create")
	err = api.Post(ctx, "com.atproto.repo.deleteRecord", map[string]any{"repo": alice.DID, "collection": "com.example.note", "rkey": aturi.RecordKey().String()}, nil)
	refused("delete com.example.note", err, "repo:com.example.note?action=delete")
	// putRecord needs update as well as create, like the reference PDS.
	err = api.Post(ctx, "com.atproto.repo.putRecord", map[string]any{"repo": alice.DID, "collection": "com.example.note", "rkey": "self", "record": map[string]any{"text": "x"}}, nil)
	refused("put com.example.note", err, "repo:com.example.note?action=update")
	if _, ok := srv.Record(created.URI); !ok {
		t.Fatal("the record was deleted despite the refusal")
	}
}

// Every form of repo: scope, checked against each write method.
func TestRepoScopeForms(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	const (
		create = "com.atproto.repo.createRecord"
		put    = "com.atproto.repo.putRecord"
		del    = "com.atproto.repo.deleteRecord"
	)
	cases := []struct {
		scope      string
		nsid, coll string
		ok         bool
	}{
		{"repo:com.example.note", create, "com.example.note", true},
		{"repo:com.example.note", put, "com.example.note", true},
		{"repo:com.example.note", del, "com.example.note", true},
		{"repo:com.example.note", create, "com.example.other", false},
		{"repo:*", create, "app.bsky.feed.post", true},
		{"repo:*?action=delete", del, "app.bsky.feed.post", true},
		{"repo:*?action=delete", create, "app.bsky.feed.post", false},
		{"repo?collection=com.example.a&collection=com.example.b&action=update&action=create", put, "com.example.b", true},
		{"repo?collection=com.example.a&collection=com.example.b&action=update&action=create", del, "com.example.a", false},
		{"repo:com.example.note?action=update", put, "com.example.note", false},   // put needs create too
		{"repo:com.example.note?action=write", create, "com.example.note", false}, // unknown action: grants nothing
		{"repo:com.example.note?mode=all", create, "com.example.note", false},     // unknown parameter: grants nothing
		{"repo:com.example.*", create, "com.example.note", false},                 // not an NSID
		{"transition:generic", del, "app.bsky.feed.post", true},
		{"rpc:com.atproto.repo.createRecord?aud=*", create, "com.example.note", false},
	}
	for _, c := range cases {
		t.Run(c.scope+" "+c.nsid+" "+c.coll, func(t *testing.T) {
			f := newScopedFlow(t, srv, "atproto", c.scope)
			f.approve("alice.test")
			at := f.tokens().str("access_token")
			r := writeAs(t, f, at, alice.DID, c.nsid, c.coll)
			if c.ok && r.status != http.StatusOK {
				t.Fatalf("want 200, got %d %v", r.status, r.body)
			}
			if !c.ok && (r.status != http.StatusForbidden || r.errCode() != "InsufficientScope" || !strings.HasPrefix(r.str("message"), `Missing required scope "repo:`+c.coll+"?action=")) {
				t.Fatalf("want 403 InsufficientScope, got %d %v", r.status, r.body)
			}
		})
	}
}

func TestPromptAndLoginHintAtPAR(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	for _, prompt := range []string{"", "login", "select_account", "consent", "create"} {
		f := newRawFlow(t, srv)
		form := f.parForm()
		if prompt != "" {
			form.Set("prompt", prompt)
		}
		form.Set("login_hint", "Alice.Test")
		if r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par")); r.status != http.StatusCreated {
			t.Fatalf("prompt %q: %d %v", prompt, r.status, r.body)
		}
	}
	for _, bad := range []string{"bogus", "login consent", "NONE"} {
		f := newRawFlow(t, srv)
		form := f.parForm()
		form.Set("prompt", bad)
		if r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par")); r.status != http.StatusBadRequest || r.errCode() != "invalid_request" {
			t.Fatalf("prompt %q: %d %v", bad, r.status, r.body)
		}
	}
	// Silent sign-in is for clients that authenticate, like on the
	// reference server.
	f := newRawFlow(t, srv)
	form := f.parForm()
	form.Set("prompt", "none")
	if r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par")); r.status != http.StatusBadRequest || r.errCode() != "consent_required" {
		t.Fatalf("prompt none from a public client: %d %v", r.status, r.body)
	}

	resp, err := srv.HTTPClient().Get(srv.Issuer() + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Prompts []string `json:"prompt_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || strings.Join(md.Prompts, " ") != "none login consent select_account create" {
		t.Fatalf("prompt_values_supported %v %v", md.Prompts, err)
	}

	reqs := srv.AuthorizationRequests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests recorded, want the 5 accepted: %+v", len(reqs), reqs)
	}
	for i, want := range []string{"", "login", "select_account", "consent", "create"} {
		r := reqs[i]
		if r.Prompt != want || r.LoginHint != "Alice.Test" || r.Scope != "atproto transition:generic" || r.RedirectURI != callbackURL ||
			!strings.HasPrefix(r.ClientID, "http://localhost?") || r.Created.IsZero() {
			t.Fatalf("request %d: %+v", i, r)
		}
		if i > 0 && r.Created.Before(reqs[i-1].Created) {
			t.Fatal("not oldest first")
		}
	}
}

// prompt=none shows no page: without a signed-in user it ends with
// login_required; auto-approve mode stands for a user who has consented.
func TestPromptNone(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	const clientID = "https://app.test/oauth-client-metadata.json"
	cfg := oauth.NewPublicConfig(clientID, "https://app.test/callback", []string{"atproto"})
	if err := cfg.SetClientSecret(newKey(t), "kid1"); err != nil {
		t.Fatal(err)
	}
	md := cfg.ClientMetadata()
	jwks := cfg.PublicJWKS()
	md.JWKS = &jwks
	if err := srv.RegisterClient(md); err != nil {
		t.Fatal(err)
	}
	par := func() *rawFlow {
		f := newScopedFlow(t, srv, "atproto")
		f.clientID, f.redirect = clientID, "https://app.test/callback"
		form := f.parForm()
		form.Set("prompt", "none")
		form.Set("login_hint", "alice.test")
		jwt, err := cfg.NewClientAssertion(srv.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		form.Set("client_assertion_type", oauth.ClientAssertionJWTBearer)
		form.Set("client_assertion", jwt)
		r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par"))
		if r.status != http.StatusCreated {
			t.Fatalf("PAR: %d %v", r.status, r.body)
		}
		f.requestURI = r.str("request_uri")
		return f
	}

	f := par()
	p := getPage(t, srv.RewriteForBrowser(f.authorizeURL()))
	q := mustQuery(t, p.header.Get("Location"))
	if p.status != http.StatusSeeOther || q.Get("error") != "login_required" || q.Get("state") != f.state || q.Get("iss") != srv.Issuer() {
		t.Fatalf("page: %d %v", p.status, p.header)
	}
	f = par()
	redirect, err := srv.Consent(ctx, f.authorizeURL(), "alice.test", true)
	if err != nil || mustQuery(t, redirect).Get("error") != "login_required" {
		t.Fatalf("Consent: %s %v", redirect, err)
	}
	if st := srv.Stats(); st.Approvals != 0 || st.PARs != 2 {
		t.Fatalf("stats: %+v", st)
	}

	srv.SetAutoApprove(true)
	f = par()
	p = getPage(t, srv.RewriteForBrowser(f.authorizeURL()))
	if p.status != http.StatusSeeOther || mustQuery(t, p.header.Get("Location")).Get("code") == "" {
		t.Fatalf("auto-approve: %d %v", p.status, p.header)
	}
	if got := srv.AuthorizationRequests()[2]; got.Prompt != "none" || got.LoginHint != "alice.test" || got.ClientID != clientID {
		t.Fatalf("recorded: %+v", got)
	}
}

// parPrompt sends a PAR with prompt and login_hint and keeps the
// request_uri.
func (f *rawFlow) parPrompt(prompt, hint string) {
	f.t.Helper()
	form := f.parForm()
	form.Set("prompt", prompt)
	if hint != "" {
		form.Set("login_hint", hint)
	}
	r := postForm(f.t, f.srv, "/oauth/par", form, f.proof("/oauth/par"))
	if r.status != http.StatusCreated {
		f.t.Fatalf("PAR: %d %v", r.status, r.body)
	}
	f.requestURI = r.str("request_uri")
}

func TestSignUpThroughConsent(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})

	// A new handle: the account is created, then approved for.
	f := newRawFlow(t, srv)
	f.parPrompt("create", "carol")
	redirect, err := srv.Consent(ctx, f.authorizeURL(), "carol", true)
	if err != nil {
		t.Fatal(err)
	}
	f.code = mustQuery(t, redirect).Get("code")
	carol, ok := srv.Account("carol.test")
	if !ok || f.code == "" {
		t.Fatalf("sign-up: account %v, redirect %s", ok, redirect)
	}
	if tok := f.tokens(); tok.str("sub") != carol.DID.String() {
		t.Fatalf("sub %q, want %s", tok.str("sub"), carol.DID)
	}
	if ident, err := srv.Directory().LookupHandle(ctx, "carol.test"); err != nil || ident.DID != carol.DID {
		t.Fatalf("directory: %v", err)
	}

	// An existing handle: approved normally, nothing created.
	f = newRawFlow(t, srv)
	f.parPrompt("create", "")
	redirect, err = srv.Consent(ctx, f.authorizeURL(), "@Alice.Test", true)
	if err != nil {
		t.Fatal(err)
	}
	f.code = mustQuery(t, redirect).Get("code")
	if tok := f.tokens(); tok.str("sub") != alice.DID.String() {
		t.Fatalf("sub %q, want alice", tok.str("sub"))
	}

	// Bad handles are refused, and a denied sign-up creates nothing.
	f = newRawFlow(t, srv)
	f.parPrompt("create", "")
	for _, bad := range []string{"", "not a handle", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"} {
		if _, err := srv.Consent(ctx, f.authorizeURL(), bad, true); err == nil {
			t.Fatalf("sign-up as %q accepted", bad)
		}
	}
	if redirect, err := srv.Consent(ctx, f.authorizeURL(), "dave", false); err != nil || mustQuery(t, redirect).Get("error") != "access_denied" {
		t.Fatalf("deny: %s %v", redirect, err)
	}
	if _, ok := srv.Account("dave.test"); ok {
		t.Fatal("a denied sign-up created the account")
	}
	// Without prompt=create, an unknown handle is still an error.
	f = newRawFlow(t, srv)
	f.par()
	if _, err := srv.Consent(ctx, f.authorizeURL(), "erin", true); err == nil {
		t.Fatal("unknown account accepted without prompt=create")
	}
	if st := srv.Stats(); st.AccountsCreated != 1 || len(srv.Accounts()) != 2 {
		t.Fatalf("stats %+v, %d accounts", st, len(srv.Accounts()))
	}
}

func TestSignUpPageInABrowser(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newRawFlow(t, srv)
	f.parPrompt("create", "dave")
	pageURL := srv.RewriteForBrowser(f.authorizeURL())
	p := getPage(t, pageURL)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Create an account") || !strings.Contains(p.body, `name="account" value="dave"`) ||
		strings.Contains(p.body, `type="hidden" name="account"`) {
		t.Fatalf("sign-up page: %d\n%s", p.status, p.body)
	}
	action, form := formOf(t, pageURL, p)
	form.Set("decision", "approve")
	form.Set("account", "dave")
	if r := postPage(t, action, form, map[string]string{"Sec-Fetch-Site": "cross-site"}); r.status != http.StatusForbidden {
		t.Fatalf("cross-site sign-up: %d", r.status)
	}
	noCSRF := maps.Clone(form)
	noCSRF.Del("csrf_token")
	if r := postPage(t, action, noCSRF, nil); r.status != http.StatusForbidden {
		t.Fatalf("sign-up without CSRF token: %d", r.status)
	}
	if _, ok := srv.Account("dave.test"); ok {
		t.Fatal("created by a refused POST")
	}
	_, form = formOf(t, pageURL, p)
	form.Set("decision", "approve")
	form.Set("account", "not a handle")
	if r := postPage(t, action, form, nil); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Cannot create the account") || !strings.Contains(r.body, "Create an account") {
		t.Fatalf("bad handle: %d\n%s", r.status, r.body)
	}
	form.Set("account", "dave")
	r := postPage(t, action, form, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if r.status != http.StatusSeeOther || mustQuery(t, r.header.Get("Location")).Get("code") == "" {
		t.Fatalf("sign-up: %d %v", r.status, r.header)
	}
	f.code = mustQuery(t, r.header.Get("Location")).Get("code")
	dave, ok := srv.Account("dave.test")
	if !ok || f.tokens().str("sub") != dave.DID.String() || srv.Stats().AccountsCreated != 1 {
		t.Fatalf("account %+v %v, stats %+v", dave, ok, srv.Stats())
	}
}

func TestSignUpWithAutoApprove(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{AutoApprove: true})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	// The only account is not who signs up.
	f := newRawFlow(t, srv)
	f.parPrompt("create", "frank.test")
	p := getPage(t, srv.RewriteForBrowser(f.authorizeURL()))
	if p.status != http.StatusSeeOther {
		t.Fatalf("auto sign-up: %d %s", p.status, p.body)
	}
	f.code = mustQuery(t, p.header.Get("Location")).Get("code")
	frank, ok := srv.Account("frank.test")
	if !ok || f.tokens().str("sub") != frank.DID.String() || frank.DID == alice.DID {
		t.Fatalf("frank %+v %v", frank, ok)
	}
	// Without a hint there is no one to sign up: the form is shown.
	f = newRawFlow(t, srv)
	f.parPrompt("create", "")
	if p := getPage(t, srv.RewriteForBrowser(f.authorizeURL())); p.status != http.StatusOK || !strings.Contains(p.body, "Create an account") {
		t.Fatalf("auto sign-up without hint: %d", p.status)
	}
}

func TestDenyScopes(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	scopes := []string{"atproto", "transition:generic", "repo:com.example.note?action=create"}

	srv.DenyScopes("transition:generic", "atproto")
	f := newScopedFlow(t, srv, scopes...)
	f.approve("alice.test")
	srv.DenyScopes() // clears; the approval above keeps what it granted
	tok := f.tokens()
	if got := tok.str("scope"); got != "atproto repo:com.example.note?action=create" {
		t.Fatalf("granted %q", got)
	}
	at := tok.str("access_token")
	if r := writeAs(t, f, at, alice.DID, "com.atproto.repo.createRecord", "app.bsky.feed.post"); r.status != http.StatusForbidden {
		t.Fatalf("write with transition:generic denied: %d %v", r.status, r.body)
	}
	if r := writeAs(t, f, at, alice.DID, "com.atproto.repo.createRecord", "com.example.note"); r.status != http.StatusOK {
		t.Fatalf("write with the granted repo scope: %d %v", r.status, r.body)
	}
	if r := f.refresh(tok.str("refresh_token")); r.str("scope") != "atproto repo:com.example.note?action=create" {
		t.Fatalf("refresh grants %q", r.str("scope"))
	}

	f = newScopedFlow(t, srv, scopes...)
	f.approve("alice.test")
	if got := f.tokens().str("scope"); got != strings.Join(scopes, " ") {
		t.Fatalf("after clearing: %q", got)
	}
}

func TestPermissionSets(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	const set = "com.example.authFull"
	if err := srv.PublishPermissionSet(set,
		"repo:com.example.note?action=create",
		"repo?collection=com.example.tag&collection=com.example.sub.item&action=delete&action=create&action=update",
		"rpc:com.example.getNotes",         // inheritAud
		"rpc:com.example.listThings?aud=*", // any service
		"repo:com.other.thing",             // another authority: never granted
		"rpc:app.bsky.feed.getFeed?aud=*",  // same
	); err != nil {
		t.Fatal(err)
	}
	include := "include:" + set + "?aud=did:web:api.example.com%23notes"
	wantSet := "repo:com.example.note?action=create repo?collection=com.example.sub.item&collection=com.example.tag " +
		"rpc:com.example.getNotes?aud=did:web:api.example.com%23notes rpc:com.example.listThings?aud=*"

	t.Run("expansion at grant and at refresh", func(t *testing.T) {
		f := newScopedFlow(t, srv, "atproto", include, "transition:email")
		f.approve("alice.test")
		tok := f.tokens()
		if got := tok.str("scope"); got != wantSet+" atproto transition:email" {
			t.Fatalf("code grant scope:\n got %s\nwant %s", got, wantSet+" atproto transition:email")
		}
		at := tok.str("access_token")
		if info, _ := srv.Session(at); info.Scope != tok.str("scope") {
			t.Fatalf("SessionInfo.Scope %q", info.Scope)
		}
		for _, w := range []struct {
			nsid, coll string
			status     int
		}{
			{"com.atproto.repo.createRecord", "com.example.note", 200},
			{"com.atproto.repo.deleteRecord", "com.example.note", 403},
			{"com.atproto.repo.putRecord", "com.example.tag", 200},
			{"com.atproto.repo.deleteRecord", "com.example.sub.item", 200},
			{"com.atproto.repo.createRecord", "com.other.thing", 403},
		} {
			if r := writeAs(t, f, at, alice.DID, w.nsid, w.coll); r.status != w.status {
				t.Fatalf("%s %s: %d %v, want %d", w.nsid, w.coll, r.status, r.body, w.status)
			}
		}

		// The set changes: the next refresh resolves it again and grants less.
		if err := srv.PublishPermissionSet(set, "repo:com.example.tag?action=create"); err != nil {
			t.Fatal(err)
		}
		r := f.refresh(tok.str("refresh_token"))
		if r.status != 200 || r.str("scope") != "repo:com.example.tag?action=create atproto transition:email" {
			t.Fatalf("refresh: %d %v", r.status, r.body)
		}
		at = r.str("access_token")
		if info, _ := srv.Session(at); info.Scope != r.str("scope") || info.Refreshes != 1 {
			t.Fatalf("SessionInfo after refresh: %+v", info)
		}
		if w := writeAs(t, f, at, alice.DID, "com.atproto.repo.createRecord", "com.example.note"); w.status != http.StatusForbidden {
			t.Fatalf("write dropped from the set still allowed: %d %v", w.status, w.body)
		}
		if w := writeAs(t, f, at, alice.DID, "com.atproto.repo.createRecord", "com.example.tag"); w.status != http.StatusOK {
			t.Fatalf("write still in the set: %d %v", w.status, w.body)
		}
		// And more again at the refresh after that.
		if err := srv.PublishPermissionSet(set, "repo:com.example.tag", "repo:com.example.note"); err != nil {
			t.Fatal(err)
		}
		if r = f.refresh(r.str("refresh_token")); r.str("scope") != "repo:com.example.tag repo:com.example.note atproto transition:email" {
			t.Fatalf("second refresh: %d %v", r.status, r.body)
		}
	})

	t.Run("inheritAud", func(t *testing.T) {
		if err := srv.PublishPermissionSet("com.example.rpcOnly", "rpc:com.example.getNotes", "rpc?lxm=com.example.b&lxm=com.example.a&aud=*"); err != nil {
			t.Fatal(err)
		}
		// Without aud on the include: an inheritAud permission has no
		// audience and is not granted.
		f := newScopedFlow(t, srv, "atproto", "include:com.example.rpcOnly")
		f.approve("alice.test")
		if got := f.tokens().str("scope"); got != "rpc?lxm=com.example.a&lxm=com.example.b&aud=* atproto" {
			t.Fatalf("without aud: %q", got)
		}
		f = newScopedFlow(t, srv, "atproto", "include:com.example.rpcOnly?aud=did:web:svc.example.com%23api")
		f.approve("alice.test")
		if got := f.tokens().str("scope"); got != "rpc:com.example.getNotes?aud=did:web:svc.example.com%23api rpc?lxm=com.example.a&lxm=com.example.b&aud=* atproto" {
			t.Fatalf("with aud: %q", got)
		}
	})

	t.Run("denied permission of a set", func(t *testing.T) {
		if err := srv.PublishPermissionSet("com.example.pair", "repo:com.example.a", "repo:com.example.b"); err != nil {
			t.Fatal(err)
		}
		srv.DenyScopes("repo:com.example.b")
		defer srv.DenyScopes()
		f := newScopedFlow(t, srv, "atproto", "include:com.example.pair")
		f.approve("alice.test")
		tok := f.tokens()
		if got := tok.str("scope"); got != "repo:com.example.a atproto" {
			t.Fatalf("granted %q", got)
		}
		if r := f.refresh(tok.str("refresh_token")); r.str("scope") != "repo:com.example.a atproto" {
			t.Fatalf("refresh granted %q", r.str("scope"))
		}
	})

	t.Run("unknown set at PAR", func(t *testing.T) {
		f := newScopedFlow(t, srv, "atproto", "include:com.example.nothing")
		r := postForm(t, srv, "/oauth/par", f.parForm(), f.proof("/oauth/par"))
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_scope" || !strings.Contains(r.str("error_description"), "com.example.nothing") {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	})

	t.Run("with indigo's client", func(t *testing.T) {
		app, _ := newApp(srv, "atproto", "include:com.example.pair")
		sd := login(t, ctx, srv, app, alice)
		if got := strings.Join(sd.Scopes, " "); got != "repo:com.example.a repo:com.example.b atproto" {
			t.Fatalf("scopes %q", got)
		}
		sess, _ := app.ResumeSession(ctx, sd.AccountDID, sd.SessionID)
		if err := sess.APIClient().Post(ctx, "com.atproto.repo.createRecord", map[string]any{"repo": alice.DID, "collection": "com.example.b", "record": map[string]any{}}, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the lexicon document on the network", func(t *testing.T) {
		dir := srv.Directory()
		resolver, ok := dir.(interface {
			ResolveNSID(ctx context.Context, nsid syntax.NSID) (syntax.DID, error)
		})
		if !ok {
			t.Fatal("Directory has no ResolveNSID")
		}
		did, err := resolver.ResolveNSID(ctx, set)
		if err != nil || did != syntax.DID("did:web:pds.test") {
			t.Fatalf("ResolveNSID: %s %v", did, err)
		}
		if _, err := resolver.ResolveNSID(ctx, "com.example.nothing"); !errors.Is(err, identity.ErrNSIDNotFound) {
			t.Fatalf("unknown NSID: %v", err)
		}
		ident, err := dir.LookupDID(ctx, did)
		if err != nil || ident.PDSEndpoint() != srv.Issuer() {
			t.Fatalf("LookupDID: %+v %v", ident, err)
		}
		// Read it as a lexicon resolver does: getRecord at the DID's PDS,
		// without credentials.
		var got struct {
			URI   string
			CID   string
			Value struct {
				Type    string `json:"$type"`
				Lexicon int    `json:"lexicon"`
				ID      string `json:"id"`
				Defs    map[string]struct {
					Type        string `json:"type"`
					Permissions []struct {
						Type       string   `json:"type"`
						Resource   string   `json:"resource"`
						Collection []string `json:"collection"`
						Action     []string `json:"action"`
						LXM        []string `json:"lxm"`
						Aud        string   `json:"aud"`
						InheritAud bool     `json:"inheritAud"`
					} `json:"permissions"`
				} `json:"defs"`
			}
		}
		api := atclient.NewAPIClient(ident.PDSEndpoint())
		api.Client = srv.HTTPClient()
		if err := api.Get(ctx, "com.atproto.repo.getRecord", map[string]any{"repo": did.String(), "collection": "com.atproto.lexicon.schema", "rkey": "com.example.rpcOnly"}, &got); err != nil {
			t.Fatal(err)
		}
		main := got.Value.Defs["main"]
		if got.URI != "at://did:web:pds.test/com.atproto.lexicon.schema/com.example.rpcOnly" || got.Value.Type != "com.atproto.lexicon.schema" ||
			got.Value.Lexicon != 1 || got.Value.ID != "com.example.rpcOnly" || main.Type != "permission-set" || len(main.Permissions) != 2 {
			t.Fatalf("record: %+v", got)
		}
		p0, p1 := main.Permissions[0], main.Permissions[1]
		if p0.Type != "permission" || p0.Resource != "rpc" || !p0.InheritAud || p0.Aud != "" || strings.Join(p0.LXM, ",") != "com.example.getNotes" ||
			p1.Aud != "*" || p1.InheritAud || strings.Join(p1.LXM, ",") != "com.example.b,com.example.a" {
			t.Fatalf("permissions: %+v", main.Permissions)
		}
		var list struct{ Records []struct{ URI string } }
		if err := api.Get(ctx, "com.atproto.repo.listRecords", map[string]any{"repo": did.String(), "collection": "com.atproto.lexicon.schema"}, &list); err != nil || len(list.Records) != 3 {
			t.Fatalf("listRecords: %+v %v", list, err)
		}
		// did:web resolves over HTTPS too, through the test client.
		resp, err := srv.HTTPClient().Get("https://pds.test/.well-known/did.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc identity.DIDDocument
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if webIdent := identity.ParseIdentity(&doc); webIdent.DID != did || webIdent.PDSEndpoint() != srv.Issuer() {
			t.Fatalf("did.json: %+v", webIdent)
		}
		// It is not an account.
		if _, ok := srv.Account(did.String()); ok || len(srv.Accounts()) != 1 {
			t.Fatal("the lexicon DID is an account")
		}
	})

	t.Run("consent page shows what a set grants", func(t *testing.T) {
		f := newScopedFlow(t, srv, "atproto", "include:com.example.pair")
		f.par()
		p := getPage(t, srv.RewriteForBrowser(f.authorizeURL()))
		if !strings.Contains(p.body, "include:com.example.pair") || !strings.Contains(p.body, "repo:com.example.b") {
			t.Fatalf("page:\n%s", p.body)
		}
	})
}

func TestPublishPermissionSetValidates(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	if err := srv.PublishPermissionSet("not an nsid", "repo:com.example.note"); err == nil {
		t.Error("invalid NSID accepted")
	}
	for _, bad := range []string{
		"repo:*",
		"repo:notnsid",
		"repo:com.example.note?action=write",
		"rpc:com.example.get?aud=did:web:api.example.com%23svc", // a set cannot name a service
		"rpc:*?aud=*",
		"blob:*/*",
		"account:email",
		"identity:handle",
		"include:com.example.other",
		"transition:generic",
		"atproto",
	} {
		if err := srv.PublishPermissionSet("com.example.set", bad); err == nil {
			t.Errorf("permission %q accepted", bad)
		}
	}
	if err := srv.PublishPermissionSet("com.example.empty"); err != nil {
		t.Errorf("empty set: %v", err)
	}
	if _, err := srv.Directory().(interface {
		ResolveNSID(context.Context, syntax.NSID) (syntax.DID, error)
	}).ResolveNSID(context.Background(), "com.example.set"); err == nil {
		t.Error("a refused set was published")
	}
}

// The loopback client declares granular and include: scopes in its
// client_id, and may request only those, exactly as written.
func TestLoopbackClientDeclaresGranularScopes(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	if err := srv.PublishPermissionSet("com.example.authFull", "repo:com.example.note"); err != nil {
		t.Fatal(err)
	}
	declared := []string{"atproto", "repo:com.example.note?action=create", "include:com.example.authFull", "rpc:com.example.get?aud=*"}
	for _, c := range []struct {
		scope string
		ok    bool
	}{
		{"atproto repo:com.example.note?action=create include:com.example.authFull rpc:com.example.get?aud=*", true},
		{"atproto include:com.example.authFull", true},
		{"atproto repo:com.example.note", false},
		{"atproto repo:com.example.note?action=delete", false},
		{"atproto include:com.example.authFull?aud=did:web:api.example.com%23svc", false},
		{"atproto transition:generic", false},
	} {
		f := newScopedFlow(t, srv, declared...)
		form := f.parForm()
		form.Set("scope", c.scope)
		r := postForm(t, srv, "/oauth/par", form, f.proof("/oauth/par"))
		if c.ok && r.status != http.StatusCreated {
			t.Errorf("%s: %d %v", c.scope, r.status, r.body)
		}
		if !c.ok && (r.status != http.StatusBadRequest || r.errCode() != "invalid_scope") {
			t.Errorf("%s: want invalid_scope, got %d %v", c.scope, r.status, r.body)
		}
	}
	// Repeated values are requested once.
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newScopedFlow(t, srv, declared...)
	f.scope = "atproto include:com.example.authFull atproto include:com.example.authFull"
	f.approve("alice.test")
	if got := f.tokens().str("scope"); got != "repo:com.example.note atproto" {
		t.Fatalf("granted %q", got)
	}
}
