// Package demotest drives the example apps in tests the way a person with a
// browser does: a cookie jar, HTML forms, redirects followed one hop at a
// time, and the consent page of the built-in authorization server, whose
// form is read from its HTML and submitted like a click on Approve.
package demotest

import (
	"bufio"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Browser is one user agent with its own cookies.
type Browser struct {
	t    testing.TB
	Base string // the app's base URL, e.g. http://127.0.0.1:8080
	Jar  *cookiejar.Jar
	hc   *http.Client
}

// NewBrowser returns a browser for the app at base.
func NewBrowser(t testing.TB, base string) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{t: t, Base: strings.TrimRight(base, "/"), Jar: jar, hc: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		// Hops are followed by hand so tests can look at each one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// At returns the same browser (same cookie jar) pointed at another app
// base URL, as when a person opens a second tab on another port: browsers
// send a host's cookies to all of its ports.
func (b *Browser) At(base string) *Browser {
	c := *b
	c.Base = strings.TrimRight(base, "/")
	return &c
}

// Page is one response.
type Page struct {
	URL    string
	Status int
	Header http.Header
	Body   string
}

// Location is the redirect target, resolved against the page's URL.
func (p *Page) Location() string {
	loc := p.Header.Get("Location")
	if loc == "" {
		return ""
	}
	base, err := url.Parse(p.URL)
	if err != nil {
		return loc
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	return base.ResolveReference(ref).String()
}

// Contains reports whether the page's HTML holds s (after unescaping).
func (p *Page) Contains(s string) bool { return strings.Contains(html.UnescapeString(p.Body), s) }

func (b *Browser) abs(target string) string {
	if strings.HasPrefix(target, "/") {
		return b.Base + target
	}
	return target
}

// Do sends one request as a browser would (Accept: text/html; form posts
// carry the Origin of the page they come from) and does not follow
// redirects.
func (b *Browser) Do(method, target string, form url.Values, origin string) *Page {
	b.t.Helper()
	target = b.abs(target)
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return &Page{URL: target, Status: resp.StatusCode, Header: resp.Header, Body: string(data)}
}

// Get loads target (a path on the app, or an absolute URL).
func (b *Browser) Get(target string) *Page {
	b.t.Helper()
	return b.Do(http.MethodGet, target, nil, "")
}

// Post submits a form on the app from one of the app's own pages.
func (b *Browser) Post(path string, form url.Values) *Page {
	b.t.Helper()
	return b.Do(http.MethodPost, path, form, b.Base)
}

// Follow follows redirects from p with GET, as a browser does after a 302
// or 303, and returns the first page that is not a redirect.
func (b *Browser) Follow(p *Page) *Page {
	b.t.Helper()
	for i := 0; p.Status >= 300 && p.Status < 400; i++ {
		if i == 10 {
			b.t.Fatalf("too many redirects, last to %s", p.Location())
		}
		p = b.Get(p.Location())
	}
	return p
}

// hiddenInput matches the consent page's hidden form fields.
var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// Login logs in as handle through the app's start page form and the
// authorization server's consent page, clicking Approve (or Deny), and
// returns the page the browser ends on.
func (b *Browser) Login(handle string, approve bool) *Page {
	b.t.Helper()
	start := b.Post("/login", url.Values{"handle": {handle}, "redirect": {"/"}})
	if start.Status != http.StatusFound {
		b.t.Fatalf("POST /login: want 302 to the authorization server, got %d: %.400s", start.Status, start.Body)
	}
	consent := b.Get(start.Location())
	if consent.Status != http.StatusOK || !strings.Contains(consent.Body, `value="approve"`) {
		b.t.Fatalf("consent page: got %d: %.600s", consent.Status, consent.Body)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(consent.Body, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if form.Get("csrf_token") == "" || form.Get("request_uri") == "" {
		b.t.Fatalf("consent page has no form to submit: %.600s", consent.Body)
	}
	if form.Get("account") == "" {
		form.Set("account", handle)
	}
	form.Set("decision", "deny")
	if approve {
		form.Set("decision", "approve")
	}
	consentURL, _ := url.Parse(consent.URL)
	action := consentURL.ResolveReference(&url.URL{Path: "authorize"}).String()
	decided := b.Do(http.MethodPost, action, form, consentURL.Scheme+"://"+consentURL.Host)
	if decided.Status != http.StatusSeeOther {
		b.t.Fatalf("consent decision: want 303 back to the app, got %d: %.600s", decided.Status, decided.Body)
	}
	if !strings.HasPrefix(decided.Location(), b.Base+"/oauth/callback?") {
		b.t.Fatalf("consent should send the browser to the app's callback, got %s", decided.Location())
	}
	return b.Follow(decided)
}

// Cookie returns the cookie name the browser holds for the app, or nil.
func (b *Browser) Cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.Base)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// SetCookieHeader returns the Set-Cookie line for cookie name in p, or "".
func SetCookieHeader(p *Page, name string) string {
	for _, line := range p.Header.Values("Set-Cookie") {
		if strings.HasPrefix(line, name+"=") {
			return line
		}
	}
	return ""
}

// URLsFromBanner reads an example's startup output from r until it has seen
// n "Open" lines and returns their URLs. It fails the test after timeout.
// The rest of r is drained in the background so the app never blocks on it.
func URLsFromBanner(t testing.TB, r io.Reader, n int, timeout time.Duration) []string {
	t.Helper()
	found := make(chan []string, 1)
	go func() {
		var urls []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "Open:" || len(f) >= 3 && f[0] == "Open" {
				urls = append(urls, f[len(f)-1])
				if len(urls) == n {
					found <- urls
					break
				}
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case urls := <-found:
		return urls
	case <-time.After(timeout):
		t.Fatalf("the app did not print %d URL(s) within %v", n, timeout)
		return nil
	}
}
