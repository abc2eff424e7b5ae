package ginoauthtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// ConsentFunc plays the user at an authorization server: given the
// authorization URL an app redirected the browser to, it approves (or
// denies) for account and returns the URL the server sends the browser back
// to, the app's callback with code, state and iss. [Server.Consent] is one.
type ConsentFunc func(ctx context.Context, authorizeURL, account string, approve bool) (callbackURL string, err error)

// Browser is a user agent for end-to-end tests of a web app that logs in
// through an AT Protocol authorization server: its own cookie jar, and
// redirects not followed, so that every hop can be checked. Login runs a
// whole login as a person would (the app's login route, consent at the
// server, the app's callback):
//
//	srv := ginoauthtest.New(t, ginoauthtest.Options{})
//	srv.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
//	app := httptest.NewServer(myApp(srv.HTTPClient(), srv.Directory()))
//	b := ginoauthtest.NewBrowser(t, app.URL, srv.Consent)
//	b.Login("alice.test", "")
//	if r := b.Get("/me"); r.Status != 200 { t.Fatal(r.Status) }
//
// A failed request fails the test (t.Fatal); an answer with any status is
// returned for the test to check. Safe for use by one goroutine at a time,
// except Cookie and SetCookie, which the jar makes safe.
type Browser struct {
	// LoginPath is the app's route that starts a login from ?handle= and
	// redirects to the authorization server. Default "/login".
	LoginPath string
	// ReturnParam is the query parameter of LoginPath naming the page to
	// come back to after login. Default "redirect".
	ReturnParam string

	t       testing.TB
	base    string
	consent ConsentFunc
	jar     *cookiejar.Jar
	hc      *http.Client
}

// NewBrowser returns a browser with an empty cookie jar for the app at
// appURL, whose logins are approved by consent.
func NewBrowser(t testing.TB, appURL string, consent ConsentFunc) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{
		LoginPath: "/login", ReturnParam: "redirect",
		t: t, base: strings.TrimRight(appURL, "/"), consent: consent, jar: jar,
		hc: &http.Client{
			Jar:           jar,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object, failing the test if it is not one.
func (r Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object (%d): %s", r.Status, r.Body)
	}
	return m
}

// Do sends one request; a target starting with "/" is on the app.
func (b *Browser) Do(method, target string, body io.Reader, header http.Header) Response {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.base + target
	}
	req, err := http.NewRequestWithContext(context.Background(), method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return Response{resp.StatusCode, resp.Header, data}
}

// Get is Do with GET.
func (b *Browser) Get(target string) Response { return b.Do(http.MethodGet, target, nil, nil) }

// PostForm POSTs form, URL-encoded.
func (b *Browser) PostForm(target string, form url.Values) Response {
	return b.Do(http.MethodPost, target, strings.NewReader(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
}

// StartLogin opens the app's login route for handle (and returnTo, if not
// empty) and returns the authorization URL it redirects to.
func (b *Browser) StartLogin(handle, returnTo string) string {
	b.t.Helper()
	q := url.Values{"handle": {handle}}
	if returnTo != "" {
		q.Set(b.ReturnParam, returnTo)
	}
	r := b.Get(b.LoginPath + "?" + q.Encode())
	if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
		b.t.Fatalf("%s: want a redirect to the authorization server, got %d: %s", b.LoginPath, r.Status, r.Body)
	}
	return r.Header.Get("Location")
}

// Consent approves the login at authURL for handle and returns the
// callback URL the server sends the browser back to.
func (b *Browser) Consent(authURL, handle string) string {
	b.t.Helper()
	cb, err := b.consent(context.Background(), authURL, handle, true)
	if err != nil {
		b.t.Fatal(err)
	}
	return cb
}

// Login runs the whole login and returns the app's answer at its callback
// (normally a redirect to returnTo, with the session cookie set).
func (b *Browser) Login(handle, returnTo string) Response {
	b.t.Helper()
	return b.Get(b.Consent(b.StartLogin(handle, returnTo), handle))
}

// Cookie returns the browser's cookie called name for the app, or nil.
func (b *Browser) Cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// SetCookie plants a cookie for the app in the browser.
func (b *Browser) SetCookie(c *http.Cookie) {
	u, _ := url.Parse(b.base)
	b.jar.SetCookies(u, []*http.Cookie{c})
}
