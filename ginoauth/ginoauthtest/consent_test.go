package ginoauthtest_test

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
)

type page struct {
	status int
	header http.Header
	body   string
}

func getPage(t *testing.T, u string) page {
	t.Helper()
	resp, err := browser().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(b)}
}

func postPage(t *testing.T, u string, form url.Values, header map[string]string) page {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := browser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(b)}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// formOf returns the hidden fields of the consent form and its action
// resolved against the page URL, as a browser would.
func formOf(t *testing.T, pageURL string, p page) (string, url.Values) {
	t.Helper()
	m := regexp.MustCompile(`<form method="post" action="([^"]+)">`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no form in page:\n%s", p.body)
	}
	base, _ := url.Parse(pageURL)
	action, _ := base.Parse(html.UnescapeString(m[1]))
	v := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(p.body, -1) {
		v.Set(h[1], html.UnescapeString(h[2]))
	}
	return action.String(), v
}

func TestConsentPageInABrowser(t *testing.T) {
	ctx := testCtx(t)
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	alice := srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test", DisplayName: "Alice Liddell"})
	app, _ := newApp(srv)

	authURL, err := app.StartAuthFlow(ctx, "alice.test") // login_hint = alice.test
	if err != nil {
		t.Fatal(err)
	}
	pageURL := srv.RewriteForBrowser(authURL)
	if !strings.HasPrefix(pageURL, srv.URL()+"/oauth/authorize?") {
		t.Fatalf("browser URL %s", pageURL)
	}
	p := getPage(t, pageURL)
	if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || p.header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("page: %d %v", p.status, p.header)
	}
	for _, want := range []string{"Alice Liddell", "@alice.test", alice.DID.String(), "Local development client", "transition:generic", "Approve", "Deny", "pds.test"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	action, form := formOf(t, pageURL, p)
	if action != srv.URL()+"/oauth/authorize" || form.Get("csrf_token") == "" || form.Get("account") != alice.DID.String() {
		t.Fatalf("form: %s %v", action, form)
	}

	// The CSRF token is required and tied to the request_uri.
	noCSRF := url.Values{"client_id": {form.Get("client_id")}, "request_uri": {form.Get("request_uri")}, "account": {"alice.test"}, "decision": {"approve"}}
	if r := postPage(t, action, noCSRF, nil); r.status != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d", r.status)
	}
	other := newRawFlow(t, srv)
	other.par()
	otherPage := getPage(t, srv.RewriteForBrowser(other.authorizeURL()))
	_, otherForm := formOf(t, pageURL, otherPage)
	wrongCSRF := url.Values{"client_id": {form.Get("client_id")}, "request_uri": {form.Get("request_uri")}, "csrf_token": {otherForm.Get("csrf_token")}, "account": {"alice.test"}, "decision": {"approve"}}
	if r := postPage(t, action, wrongCSRF, nil); r.status != http.StatusForbidden {
		t.Fatalf("POST with another request's CSRF token: %d", r.status)
	}
	form.Set("decision", "approve")
	if r := postPage(t, action, form, map[string]string{"Sec-Fetch-Site": "cross-site"}); r.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", r.status)
	}
	if srv.Stats().Approvals != 0 {
		t.Fatal("approved by a refused POST")
	}

	r := postPage(t, action, form, map[string]string{"Sec-Fetch-Site": "same-origin"})
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, callbackURL+"?") {
		t.Fatalf("approve: %d %q", r.status, loc)
	}
	q := mustQuery(t, loc)
	if q.Get("code") == "" || q.Get("state") == "" || q.Get("iss") != "https://pds.test" {
		t.Fatalf("redirect %s", loc)
	}
	sd, err := app.ProcessCallback(ctx, q)
	if err != nil || sd.AccountDID != alice.DID {
		t.Fatalf("ProcessCallback: %v", err)
	}

	// The page is single use too: opening it again sends the browser back
	// with access_denied, like the reference server.
	again := getPage(t, pageURL)
	if again.status != http.StatusSeeOther || mustQuery(t, again.header.Get("Location")).Get("error") != "access_denied" {
		t.Fatalf("reopened page: %d %v", again.status, again.header)
	}
}

func TestConsentPageWithoutHint(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	bob := srv.CreateAccount(ginoauthtest.Account{Handle: "bob.test"})
	f := newRawFlow(t, srv) // no login_hint
	f.par()
	pageURL := srv.RewriteForBrowser(f.authorizeURL())
	p := getPage(t, pageURL)
	if p.status != 200 || !strings.Contains(p.body, `name="account"`) || !strings.Contains(p.body, "bob.test") || !strings.Contains(p.body, "alice.test") {
		t.Fatalf("page: %d\n%s", p.status, p.body)
	}
	action, form := formOf(t, pageURL, p)

	// An unknown account shows the page again with an error.
	form.Set("account", "nobody.test")
	form.Set("decision", "approve")
	r := postPage(t, action, form, nil)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Unknown account") || !strings.Contains(r.body, `name="csrf_token"`) {
		t.Fatalf("unknown account: %d\n%s", r.status, r.body)
	}
	form.Set("account", "@Bob.Test")
	r = postPage(t, action, form, nil)
	if r.status != http.StatusSeeOther || mustQuery(t, r.header.Get("Location")).Get("code") == "" {
		t.Fatalf("approve as bob: %d %v", r.status, r.header)
	}
	f.code = mustQuery(t, r.header.Get("Location")).Get("code")
	if tok := f.tokens(); tok.str("sub") != bob.DID.String() {
		t.Fatalf("sub %q", tok.str("sub"))
	}
}

func TestConsentPageDeny(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	f := newRawFlow(t, srv)
	f.par()
	pageURL := srv.RewriteForBrowser(f.authorizeURL())
	action, form := formOf(t, pageURL, getPage(t, pageURL))
	form.Set("decision", "deny")
	r := postPage(t, action, form, nil)
	q := mustQuery(t, r.header.Get("Location"))
	if r.status != http.StatusSeeOther || q.Get("error") != "access_denied" || q.Get("state") != f.state || q.Get("iss") != srv.Issuer() {
		t.Fatalf("deny: %d %v", r.status, r.header)
	}
}

func TestConsentPageErrors(t *testing.T) {
	srv := ginoauthtest.New(t, ginoauthtest.Options{})
	for _, u := range []string{
		srv.URL() + "/oauth/authorize",
		srv.URL() + "/oauth/authorize?client_id=http%3A%2F%2Flocalhost&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Anope",
	} {
		p := getPage(t, u)
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, "Authorization error") {
			t.Errorf("%s: %d", u, p.status)
		}
	}
	if p := getPage(t, srv.URL()+"/"); p.status != 200 || !strings.Contains(p.body, "pds.test") {
		t.Errorf("index: %d", p.status)
	}
}
