package ginoauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// ---- a browser per client address ----

// needLoopbackAddresses skips t where 127.0.0.2 and up are not local
// addresses (they are on Linux: all of 127.0.0.0/8 is loopback).
func needLoopbackAddresses(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("this machine has no loopback address 127.0.0.2 to be a second client from: %v", err)
	}
	_ = ln.Close()
}

// addrBrowser is a browser whose connections leave from its own loopback
// address, so that the app sees it as a client of its own, with nothing
// but the connection to say so (no forwarding header).
type addrBrowser struct {
	t    testing.TB
	ip   string
	base string
	as   *ginoauthtest.Server
	hc   *http.Client
}

func newAddrBrowser(t testing.TB, ip, base string, as *ginoauthtest.Server) *addrBrowser {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	jar, _ := cookiejar.New(nil)
	return &addrBrowser{t: t, ip: ip, base: base, as: as, hc: &http.Client{
		Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request and returns its status and headers (the body is
// read and dropped, so the connection is reused).
func (b *addrBrowser) do(method, path string, form url.Values) (int, http.Header, error) {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	target := path
	if strings.HasPrefix(path, "/") {
		target = b.base + path
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return 0, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}

// login runs a whole web login for handle: the login route, consent at
// the authorization server, the callback. It returns how long it took.
func (b *addrBrowser) login(handle string) (time.Duration, error) {
	start := time.Now()
	st, h, err := b.do(http.MethodGet, "/login?"+url.Values{"handle": {handle}}.Encode(), nil)
	if err != nil {
		return 0, err
	}
	if st != http.StatusFound {
		return 0, fmt.Errorf("login from %s: %d (Retry-After %q)", b.ip, st, h.Get("Retry-After"))
	}
	cb, err := b.as.Consent(context.Background(), h.Get("Location"), handle, true)
	if err != nil {
		return 0, err
	}
	st, h, err = b.do(http.MethodGet, cb, nil)
	if err != nil {
		return 0, err
	}
	if st != http.StatusFound || h.Get("Location") != "/" {
		return 0, fmt.Errorf("callback from %s: %d %s", b.ip, st, h.Get("Location"))
	}
	return time.Since(start), nil
}

func (b *addrBrowser) mustLogin(handle string) {
	b.t.Helper()
	if _, err := b.login(handle); err != nil {
		b.t.Fatal(err)
	}
}

// ---- metrics ----

// limitMetrics records what the Manager measures, with the
// RateLimitMetrics capability.
type limitMetrics struct {
	mu       sync.Mutex
	refused  map[string]int
	failed   map[string]int
	finished map[string]int
}

func newLimitMetrics() *limitMetrics {
	return &limitMetrics{refused: map[string]int{}, failed: map[string]int{}, finished: map[string]int{}}
}

func (m *limitMetrics) LoginStarted(string) {}
func (m *limitMetrics) LoginFinished(code string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finished[code]++
}
func (m *limitMetrics) SessionChecked(string, time.Duration) {}
func (m *limitMetrics) StorageFailed(op string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed[op]++
}
func (m *limitMetrics) RateLimited(limit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refused[limit]++
}

func (m *limitMetrics) get(which map[string]int, key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return which[key]
}

var _ ginoauth.RateLimitMetrics = (*limitMetrics)(nil)

// ---- tests ----

// windowMiddle is a fixed clock 20 seconds into a minute, so that a test's
// requests all fall in one window and Retry-After is exactly 40.
func windowMiddle() func() time.Time {
	t := time.Now().Truncate(time.Minute).Add(-time.Hour).Add(20 * time.Second)
	return func() time.Time { return t }
}

// The login routes, the native start and StartOAuth from the app's own
// handler share one budget per address; past it, 429 with Retry-After
// through ErrorHandler, counted in metrics, and no request to the
// authorization server. The next window lets the address in again.
func TestLoginStartsLimitedPerAddress(t *testing.T) {
	needLoopbackAddresses(t)
	metrics := newLimitMetrics()
	var handled []ginoauth.ErrorResponse
	var mu sync.Mutex
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 4, Callbacks: 10}
		c.Metrics = metrics
		c.Mobile.RedirectURIs = []string{appRedirect}
		c.ErrorHandler = func(c *gin.Context, e ginoauth.ErrorResponse) {
			mu.Lock()
			handled = append(handled, e)
			mu.Unlock()
			c.JSON(e.Status, gin.H{"mine": true, "code": e.Code, "retry": e.RetryAfter.Seconds()})
		}
	})
	b := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
	mobileStart := func(b *addrBrowser) int {
		st, _, err := b.do(http.MethodGet, "/api/auth/mobile-start?"+url.Values{
			"handle": {"alice.test"}, "code_challenge": {s256(randomURLString(48))}, "code_challenge_method": {"S256"},
			"redirect_uri": {appRedirect}, "state": {"s"},
		}.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	starts := []func() int{
		func() int { st, _, _ := b.do(http.MethodGet, "/login?handle=alice.test", nil); return st },
		func() int {
			st, _, _ := b.do(http.MethodPost, "/login", url.Values{"handle": {"alice.test"}})
			return st
		},
		func() int { return mobileStart(b) },
		func() int { st, _, _ := b.do(http.MethodGet, "/start?handle=alice.test", nil); return st },
	}
	for i, start := range starts {
		if st := start(); st != http.StatusFound {
			t.Fatalf("login start %d of 4: %d, want 302", i+1, st)
		}
	}
	parsBefore := a.as.Stats().PARs
	for i, start := range starts {
		if st := start(); st != http.StatusTooManyRequests {
			t.Errorf("login start %d over the limit: %d, want 429", i+1, st)
		}
	}
	st, h, _ := b.do(http.MethodGet, "/login?handle=alice.test", nil)
	if st != http.StatusTooManyRequests {
		t.Fatalf("over the limit: %d", st)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", h.Get("Retry-After"))
	}
	if got := a.as.Stats().PARs; got != parsBefore {
		t.Errorf("%d refused starts sent %d pushed authorization requests; want none", len(starts)+1, got-parsBefore)
	}
	if got := metrics.get(metrics.refused, "login_start"); got != len(starts)+1 {
		t.Errorf("RateLimited(login_start) counted %d, want %d", got, len(starts)+1)
	}
	mu.Lock()
	if len(handled) == 0 || handled[0].Status != http.StatusTooManyRequests || handled[0].Code != ginoauth.CodeRateLimited || handled[0].RetryAfter <= 0 {
		t.Errorf("ErrorHandler got %+v, want 429 rate_limited with RetryAfter", handled)
	}
	mu.Unlock()

	// Another address is not affected, and the callback has a budget of
	// its own: the limited address still completes a login it started.
	other := newAddrBrowser(t, "127.0.0.3", a.Server.URL, a.as)
	other.mustLogin("alice.test")
	a.Clock.Advance(time.Minute)
	b.mustLogin("alice.test")
}

// The callback's limit: random states from one address cost a storage
// read each until the limit, then nothing; a browser asking for HTML gets
// the page, with Retry-After.
func TestCallbackFloodLimited(t *testing.T) {
	needLoopbackAddresses(t)
	metrics := newLimitMetrics()
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{Callbacks: 3}
		c.Metrics = metrics
		c.Now = windowMiddle()
	})
	flood := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
	for i := range 3 {
		if st, _, _ := flood.do(http.MethodGet, "/oauth/callback?code=x&state="+randomURLString(16), nil); st != http.StatusBadRequest {
			t.Fatalf("callback %d with an unknown state: %d, want 400", i+1, st)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, a.Server.URL+"/oauth/callback?code=x&state="+randomURLString(16), nil)
	req.Header.Set("Accept", "text/html")
	resp, err := flood.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "40" || !strings.Contains(string(page), "too many login attempts") {
		t.Fatalf("over the callback limit: %d, Retry-After %q, %q", resp.StatusCode, resp.Header.Get("Retry-After"), page)
	}
	if metrics.get(metrics.refused, "callback") != 1 || metrics.get(metrics.finished, "rate_limited") != 1 {
		t.Errorf("metrics: refused %v, finished %v", metrics.refused, metrics.finished)
	}
	newAddrBrowser(t, "127.0.0.3", a.Server.URL, a.as).mustLogin("alice.test")
}

// Session checks never count: an address at both of its limits still
// reads its session as often as it likes.
func TestSessionChecksAreNotLimited(t *testing.T) {
	needLoopbackAddresses(t)
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 1, Callbacks: 1}
	})
	b := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
	b.mustLogin("alice.test")
	if st, _, _ := b.do(http.MethodGet, "/login?handle=alice.test", nil); st != http.StatusTooManyRequests {
		t.Fatalf("second start: %d, want 429", st)
	}
	for range 200 {
		if st, _, _ := b.do(http.MethodGet, "/api/session", nil); st != http.StatusOK {
			t.Fatalf("session check at the limits: %d", st)
		}
	}
	if st, _, _ := b.do(http.MethodGet, "/api/whoami", nil); st != http.StatusOK {
		t.Fatalf("protected route at the limits: %d", st)
	}
}

// Instances sharing a store with storage.Counter share the count; with a
// store that lacks it, each instance counts alone (as documented).
func TestRateLimitsAcrossInstances(t *testing.T) {
	needLoopbackAddresses(t)
	for _, tc := range []struct {
		name     string
		store    func() storage.Store
		allowed  int // starts let through across the two instances
		shared   bool
		perLimit int
	}{
		{"counter", func() storage.Store { return memstore.New() }, 3, true, 3},
		{"no counter", func() storage.Store { return withoutCounter(memstore.New()) }, 6, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := ginoauthtest.New(t, ginoauthtest.Options{})
			as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
			store := tc.store()
			now := windowMiddle()
			app := func() *testApp {
				return startApp(t, as, func(o *apptest.Options) {
					o.Storage = store
					o.Configure = func(c *ginoauth.Config) {
						c.RateLimits = ginoauth.RateLimits{LoginStarts: tc.perLimit}
						c.Now = now // both instances in one window
					}
				})
			}
			one, two := app(), app()
			b1 := newAddrBrowser(t, "127.0.0.2", one.Server.URL, as)
			b2 := newAddrBrowser(t, "127.0.0.2", two.Server.URL, as)
			allowed := 0
			for i := range 10 {
				b := b1
				if i%2 == 1 {
					b = b2
				}
				st, _, err := b.do(http.MethodGet, "/login?handle=alice.test", nil)
				if err != nil {
					t.Fatal(err)
				}
				if st == http.StatusFound {
					allowed++
				}
			}
			if allowed != tc.allowed {
				t.Fatalf("two instances let %d of 10 starts from one address through, want %d", allowed, tc.allowed)
			}
			if got := as.Stats().PARs; got != tc.allowed {
				t.Fatalf("%d pushed authorization requests, want %d", got, tc.allowed)
			}
		})
	}
}

// withoutCounter hides a store's storage.Counter (and keeps the rest).
func withoutCounter(s *memstore.Store) storage.Store {
	return struct {
		storage.Store
		storage.Taker
		storage.Locker
		storage.Indexer
	}{s, s, s, s}
}

// A storage failure of the counter neither lifts the limit nor blocks
// logins: the instance counts on its own meanwhile, and says so in metrics.
func TestRateLimitCounterFailure(t *testing.T) {
	needLoopbackAddresses(t)
	metrics := newLimitMetrics()
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 2}
		c.Metrics = metrics
	})
	a.Store.Fail(apptest.OpIncr, "rl:", -1)
	b := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
	b.mustLogin("alice.test")
	b.mustLogin("alice.test")
	if st, _, _ := b.do(http.MethodGet, "/login?handle=alice.test", nil); st != http.StatusTooManyRequests {
		t.Fatalf("third start with the counter down: %d, want 429 (counted in process)", st)
	}
	if got := metrics.get(metrics.failed, "incr"); got != 4 { // two starts, two callbacks
		t.Errorf("StorageFailed(incr) counted %d, want 4", got)
	}
}

// The address comes from Gin's trusted-proxy setting. Gin's default trusts
// every peer, so a forwarding header anyone can write is ignored then;
// with SetTrustedProxies it counts for the named proxies only;
// TrustedPlatform's header counts as Gin says; IPv6 counts by /64.
func TestRateLimitClientAddress(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 2}
	})
	engine := func(setup func(*gin.Engine)) *gin.Engine {
		r := gin.New()
		setup(r)
		a.Manager.Mount(r)
		return r
	}
	// An invalid handle: counted, then refused with 400 before any network
	// call, so only the limit decides between 400 and 429.
	start := func(r *gin.Engine, peer string, header http.Header) int {
		req := httptest.NewRequest(http.MethodGet, "/login?handle=not+a+handle", nil)
		req.RemoteAddr = peer
		for k, v := range header {
			req.Header[k] = v
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w.Code
	}
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	// allowed sends the requests and reports how many were let through.
	allowed := func(r *gin.Engine, reqs ...struct {
		peer string
		h    http.Header
	}) int {
		n := 0
		for _, q := range reqs {
			if start(r, q.peer, q.h) == http.StatusBadRequest {
				n++
			}
		}
		return n
	}
	type rq = struct {
		peer string
		h    http.Header
	}
	spoofing := func(peer string) []rq { // one client, a new forged address each time
		return []rq{{peer, xff("198.51.100.1")}, {peer, xff("198.51.100.2")}, {peer, xff("198.51.100.3")}, {peer, xff("198.51.100.4")}}
	}

	t.Run("gin default trusts everyone: header ignored", func(t *testing.T) {
		r := engine(func(*gin.Engine) {})
		if n := allowed(r, spoofing("203.0.113.1:1000")...); n != 2 {
			t.Fatalf("forged X-Forwarded-For: %d of 4 starts let through, want 2", n)
		}
		if n := allowed(r, rq{"203.0.113.2:1000", http.Header{"X-Real-Ip": {"198.51.100.9"}}}, rq{"203.0.113.2:1000", http.Header{"X-Real-Ip": {"198.51.100.8"}}}, rq{"203.0.113.2:1000", nil}); n != 2 {
			t.Fatalf("forged X-Real-IP: %d of 3 let through, want 2", n)
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		r := engine(func(r *gin.Engine) { _ = r.SetTrustedProxies([]string{"10.0.0.1"}) })
		// Through the proxy: each client has its own budget.
		if n := allowed(r, rq{"10.0.0.1:1", xff("198.51.100.20")}, rq{"10.0.0.1:1", xff("198.51.100.20")}, rq{"10.0.0.1:1", xff("198.51.100.20")}); n != 2 {
			t.Fatalf("one client behind the proxy: %d of 3, want 2", n)
		}
		if n := allowed(r, rq{"10.0.0.1:1", xff("198.51.100.21")}); n != 1 {
			t.Fatal("another client behind the proxy was limited with the first")
		}
		// Straight from the internet: the header is the client's word.
		if n := allowed(r, spoofing("203.0.113.3:1000")...); n != 2 {
			t.Fatalf("forged header from an untrusted peer: %d of 4, want 2", n)
		}
	})
	t.Run("no proxies", func(t *testing.T) {
		r := engine(func(r *gin.Engine) { _ = r.SetTrustedProxies(nil) })
		if n := allowed(r, spoofing("203.0.113.4:1000")...); n != 2 {
			t.Fatalf("forged header without proxies: %d of 4, want 2", n)
		}
	})
	t.Run("trusted platform", func(t *testing.T) {
		for i, tc := range []struct {
			name  string
			setup func(*gin.Engine)
		}{
			{"with trusted proxies nil", func(r *gin.Engine) { r.TrustedPlatform = gin.PlatformCloudflare; _ = r.SetTrustedProxies(nil) }},
			{"with gin's default", func(r *gin.Engine) { r.TrustedPlatform = gin.PlatformCloudflare }},
		} {
			name, r := tc.name, engine(tc.setup)
			cf := func(ip string) http.Header {
				return http.Header{"Cf-Connecting-Ip": {ip}, "X-Forwarded-For": {"198.51.100.99"}}
			}
			peer := "198.18.0.1:443" // the platform's edge
			one, two := fmt.Sprint("192.0.2.", 50+2*i), fmt.Sprint("192.0.2.", 51+2*i)
			if n := allowed(r, rq{peer, cf(one)}, rq{peer, cf(one)}, rq{peer, cf(one)}, rq{peer, cf(two)}); n != 3 {
				t.Fatalf("%s: %d of 4 let through, want 3 (2 for one client, 1 for the other)", name, n)
			}
		}
	})
	t.Run("IPv6 by /64", func(t *testing.T) {
		r := engine(func(r *gin.Engine) { _ = r.SetTrustedProxies(nil) })
		if n := allowed(r, rq{"[2001:db8:1:2::1]:1", nil}, rq{"[2001:db8:1:2:ffff::9]:1", nil}, rq{"[2001:db8:1:2::3]:1", nil}); n != 2 {
			t.Fatalf("one /64: %d of 3, want 2", n)
		}
		if n := allowed(r, rq{"[2001:db8:1:3::1]:1", nil}); n != 1 {
			t.Fatal("the next /64 was limited with the first")
		}
	})
}

// No limit is keyed on the handle: a flood naming alice's handle from many
// addresses, each pushed past its own limit, does not stop alice logging
// in from hers; and every request the flood got through was within its
// address's limit.
func TestHandleFloodDoesNotLockOutTheAccount(t *testing.T) {
	needLoopbackAddresses(t)
	const limit, flooders, perFlooder = 3, 12, 6
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: limit}
		c.Now = windowMiddle()
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newAddrBrowser(t, fmt.Sprintf("127.0.1.%d", i+1), a.Server.URL, a.as)
			for range perFlooder {
				st, _, err := b.do(http.MethodPost, "/login", url.Values{"handle": {"alice.test"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusFound] != flooders*limit || statuses[http.StatusTooManyRequests] != flooders*(perFlooder-limit) {
		t.Fatalf("flood answers %v, want %d redirects and %d refusals", statuses, flooders*limit, flooders*(perFlooder-limit))
	}
	if got := a.as.Stats().PARs; got != flooders*limit {
		t.Fatalf("%d pushed authorization requests for the flood, want %d", got, flooders*limit)
	}
	newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as).mustLogin("alice.test")
}

func TestRateLimitsDisabledAndValidated(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) { c.RateLimits.Disabled = true })
	for i := range 100 {
		if st := a.NewBrowser().Get("/login?handle=not+a+handle").Status; st != http.StatusBadRequest {
			t.Fatalf("start %d with the limits off: %d", i+1, st)
		}
	}
	for _, bad := range []ginoauth.RateLimits{
		{LoginStarts: -1}, {Callbacks: -5}, {Window: 500 * time.Millisecond}, {Window: 2 * time.Hour}, {Window: -time.Minute},
	} {
		cfg := ginoauth.Config{
			OAuthClient: a.Client, Storage: memstore.New(), CookieSecret: strings.Repeat("s", 32),
			BaseURL: a.Server.URL, RateLimits: bad,
		}
		_, err := ginoauth.New(cfg)
		var ce *ginoauth.ConfigurationError
		if !errors.As(err, &ce) || ce.Field != "RateLimits" {
			t.Errorf("RateLimits %+v: %v, want a ConfigurationError for RateLimits", bad, err)
		}
	}
}

// ErrorResponseFor gives an app that renders errors itself the 429, and
// its JSON answer names the code.
func TestRateLimitedJSONAnswer(t *testing.T) {
	a := newTestApp(t, nil, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 1}
		c.Now = windowMiddle()
	})
	b := a.NewBrowser()
	b.Get("/login?handle=not+a+handle")
	r := b.Get("/login?handle=not+a+handle")
	var body map[string]any
	_ = json.Unmarshal(r.Body, &body)
	if r.Status != http.StatusTooManyRequests || body["code"] != "rate_limited" || r.Header.Get("Retry-After") != "40" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v %v", r.Status, body, r.Header)
	}
	// The app's own route answers with ErrorResponseFor.
	r = b.Get("/start?handle=alice.test")
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("StartOAuth over the limit through the app's own handler: %d %s", r.Status, r.Body)
	}
}

// countingStore counts the storage.Counter increments.
type countingStore struct {
	*memstore.Store
	mu   sync.Mutex
	n    int
	keys []string
}

func (s *countingStore) Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error) {
	s.mu.Lock()
	s.n++
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.Store.Incr(ctx, key, by, ttl)
}

func (s *countingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Past its limit an address costs no storage at all: the instance
// remembers it is over for the rest of the window. The store's keys do not
// hold the address (RecordIP is off: no addresses are stored).
func TestRateLimitedAddressCostsNoStorage(t *testing.T) {
	store := &countingStore{Store: memstore.New()}
	a := newTestApp(t, store, func(c *ginoauth.Config) {
		c.RateLimits = ginoauth.RateLimits{LoginStarts: 3}
	})
	b := a.NewBrowser()
	for i := range 50 {
		st := b.Get("/login?handle=not+a+handle").Status
		if (i < 3 && st != http.StatusBadRequest) || (i >= 3 && st != http.StatusTooManyRequests) {
			t.Fatalf("start %d: %d", i+1, st)
		}
	}
	if got := store.count(); got != 4 {
		t.Fatalf("50 starts from one address made %d storage increments, want 4 (3 under the limit, 1 that found it spent)", got)
	}
	for _, k := range store.keys {
		if !strings.HasPrefix(k, "rl:login_start:60000ms:") || strings.Contains(k, "127.0.0.1") {
			t.Fatalf("counter key %q: want rl:login_start:60000ms:<hash>:<window>, without the address", k)
		}
	}
}

// loginFloodAttack is the login-flood case of attacks_test.go, with the
// default limits: one address sends 40 login starts naming alice's handle
// and 70 callbacks with made-up states.
func loginFloodAttack(t *testing.T, a *testApp) {
	needLoopbackAddresses(t)
	flooder := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
	answers := map[string]int{}
	for range 40 {
		st, h, err := flooder.do(http.MethodPost, "/login", url.Values{"handle": {"alice.test"}})
		if err != nil {
			t.Fatal(err)
		}
		if st == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		answers[fmt.Sprint("start ", st)]++
	}
	for range 70 {
		st, _, err := flooder.do(http.MethodGet, "/oauth/callback?code=c&state="+randomURLString(16), nil)
		if err != nil {
			t.Fatal(err)
		}
		answers[fmt.Sprint("callback ", st)]++
	}
	want := map[string]int{"start 302": 30, "start 429": 10, "callback 400": 60, "callback 429": 10}
	if fmt.Sprint(answers) != fmt.Sprint(want) {
		t.Fatalf("the flood's answers %v, want %v", answers, want)
	}
	if got := a.as.Stats().PARs; got != 30 {
		t.Fatalf("%d pushed authorization requests reached the server, want 30", got)
	}
	newAddrBrowser(t, "127.0.0.3", a.Server.URL, a.as).mustLogin("alice.test")
}

// BenchmarkLoginRateLimit measures, in process and through the engine,
// what the limits add to a login start and what a refused request costs.
// The starts name an invalid handle, so the handler answers 400 without a
// network call and the limiter's share shows:
//
//	go test -run '^$' -bench LoginRateLimit -benchmem ./ginoauth/
func BenchmarkLoginRateLimit(b *testing.B) {
	engine := func(b *testing.B, store storage.Store, rl ginoauth.RateLimits) *gin.Engine {
		client := indigoclient.New(oauth.NewPublicConfig("https://app.example/m.json", "https://app.example/oauth/callback", []string{"atproto"}), memstore.New(),
			indigoclient.Options{HTTPClient: &http.Client{Transport: refuse{}}, Directory: nowhere{}})
		b.Cleanup(func() { _ = client.Close() })
		m, err := ginoauth.New(ginoauth.Config{OAuthClient: client, Storage: store, CookieSecret: strings.Repeat("k", 32),
			BaseURL: "https://app.example", RateLimits: rl})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close() })
		gin.SetMode(gin.TestMode)
		r := gin.New()
		_ = r.SetTrustedProxies(nil)
		m.Mount(r)
		return r
	}
	run := func(b *testing.B, r *gin.Engine, want int, addr func(i int) string) {
		req := httptest.NewRequest(http.MethodGet, "/login?handle=not+a+handle", nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			req.RemoteAddr = addr(i)
			i++
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != want {
				b.Fatalf("%d, want %d", w.Code, want)
			}
		}
	}
	// Distinct addresses, so each request is under its limit.
	many := func(i int) string { return fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255) }
	roomy := ginoauth.RateLimits{LoginStarts: 1 << 30}

	b.Run("limits-off", func(b *testing.B) {
		run(b, engine(b, memstore.New(), ginoauth.RateLimits{Disabled: true}), http.StatusBadRequest, many)
	})
	b.Run("under-limit/store-counter", func(b *testing.B) {
		run(b, engine(b, memstore.New(), roomy), http.StatusBadRequest, many)
	})
	b.Run("under-limit/in-process", func(b *testing.B) {
		run(b, engine(b, withoutCounter(memstore.New()), roomy), http.StatusBadRequest, many)
	})
	b.Run("refused", func(b *testing.B) {
		r := engine(b, memstore.New(), ginoauth.RateLimits{LoginStarts: 1})
		run(b, r, http.StatusTooManyRequests, func(i int) string {
			if i == 0 {
				w := httptest.NewRecorder() // spend the limit first
				req := httptest.NewRequest(http.MethodGet, "/login?handle=not+a+handle", nil)
				req.RemoteAddr = "203.0.113.1:1"
				r.ServeHTTP(w, req)
			}
			return "203.0.113.1:1"
		})
	})
	b.Run("refused-parallel", func(b *testing.B) {
		r := engine(b, memstore.New(), ginoauth.RateLimits{LoginStarts: 1})
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := httptest.NewRequest(http.MethodGet, "/login?handle=not+a+handle", nil)
			req.RemoteAddr = fmt.Sprintf("203.0.113.%d:1", next.Add(1)) // an address per goroutine
			for pb.Next() {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusBadRequest && w.Code != http.StatusTooManyRequests {
					b.Errorf("%d", w.Code)
					return
				}
			}
		})
	})
}
