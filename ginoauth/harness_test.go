package ginoauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
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
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

func init() { gin.SetMode(gin.TestMode) }

// testApp is a real Gin app using the library as a user would: indigo's
// client against a local authorization server + PDS, the prebuilt handlers,
// and two routes that call the PDS through the ready OAuth session.
type testApp struct {
	t       *testing.T
	as      *ginoauthtest.Server
	alice   ginoauthtest.Account
	bob     ginoauthtest.Account
	store   *faultyStorage
	client  *observedClient
	mgr     *ginoauth.Manager
	server  *httptest.Server
	clock   *clock
	cfgUsed ginoauth.Config
}

type appOption func(*ginoauth.Config)

func newTestApp(t *testing.T, storage ginoauth.Storage, opts ...appOption) *testApp {
	t.Helper()
	if storage == nil {
		storage = memstore.New()
	}
	as := ginoauthtest.New(t)
	a := &testApp{
		t:     t,
		as:    as,
		alice: as.CreateAccount("alice.test", ginoauthtest.WithDisplayName("Alice")),
		bob:   as.CreateAccount("bob.test"),
		store: &faultyStorage{Storage: storage},
		clock: &clock{now: time.Now()},
	}

	// The callback URL must be known before the client exists, so listen first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	oc := oauth.NewLocalhostConfig(base+"/oauth/callback", []string{"atproto", "transition:generic"})
	a.client = &observedClient{Client: indigoclient.New(oc, a.store, indigoclient.Options{HTTPClient: as.HTTPClient(), Directory: as.Directory()})}

	cfg := ginoauth.Config{
		OAuthClient:  a.client,
		Storage:      a.store,
		CookieSecret: "an-example-cookie-secret-of-32-bytes!!",
		BaseURL:      base,
		Now:          a.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a.cfgUsed = cfg
	a.mgr, err = ginoauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	r := gin.New()
	r.Use(ginoauth.Middleware(a.mgr))
	a.mgr.Mount(r)
	api := r.Group("/api", ginoauth.RequireAuth())
	api.GET("/pds-session", func(c *gin.Context) {
		sess, err := a.mgr.OAuthSession(c)
		if err != nil {
			c.JSON(errStatus(err), gin.H{"error": err.Error()})
			return
		}
		var out struct {
			DID    string `json:"did"`
			Handle string `json:"handle"`
		}
		if err := ginoauth.XRPCQuery(c, sess, "com.atproto.server.getSession", nil, &out); err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, out)
	})
	api.POST("/post", func(c *gin.Context) {
		sess, err := a.mgr.OAuthSession(c)
		if err != nil {
			c.JSON(errStatus(err), gin.H{"error": err.Error()})
			return
		}
		var out struct {
			URI string `json:"uri"`
		}
		in := map[string]any{
			"repo": sess.DID(), "collection": "app.bsky.feed.post",
			"record": map[string]any{"$type": "app.bsky.feed.post", "text": c.PostForm("text"), "createdAt": time.Now().UTC().Format(time.RFC3339)},
		}
		if err := ginoauth.XRPCProcedure(c, sess, "com.atproto.repo.createRecord", in, &out); err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, out)
	})
	r.GET("/dashboard", func(c *gin.Context) {
		u, ok := ginoauth.CurrentUser(c)
		if !ok {
			c.String(http.StatusOK, "anonymous")
			return
		}
		c.String(http.StatusOK, "hello "+u.Handle)
	})

	a.server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: r}}
	a.server.Start()
	t.Cleanup(a.server.Close)
	return a
}

func errStatus(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus()
	}
	return http.StatusInternalServerError
}

// browser is one user agent: its own cookie jar, redirects not followed so
// every hop can be checked.
type browser struct {
	t   *testing.T
	app *testApp
	jar *cookiejar.Jar
	hc  *http.Client
}

func (a *testApp) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: a.t, app: a, jar: jar, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.status, r.body)
	}
	return m
}

func (b *browser) do(method, target string, body io.Reader, header http.Header) response {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.app.server.URL + target
	}
	req, err := http.NewRequest(method, target, body)
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
	data, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, data}
}

func (b *browser) get(target string) response { return b.do(http.MethodGet, target, nil, nil) }

func (b *browser) postForm(target string, form url.Values) response {
	return b.do(http.MethodPost, target, strings.NewReader(form.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
}

// startLogin GETs /login and returns the authorization URL it redirects to.
func (b *browser) startLogin(handle, redirect string) string {
	b.t.Helper()
	q := url.Values{"handle": {handle}}
	if redirect != "" {
		q.Set("redirect", redirect)
	}
	r := b.get("/login?" + q.Encode())
	if r.status != http.StatusFound {
		b.t.Fatalf("/login: want 302, got %d: %s", r.status, r.body)
	}
	return r.header.Get("Location")
}

// consent approves on the authorization server as account and returns the
// callback URL the browser would be sent to.
func (b *browser) consent(authURL, account string) string {
	b.t.Helper()
	cb, err := b.app.as.Consent(context.Background(), authURL, account, true)
	if err != nil {
		b.t.Fatal(err)
	}
	return cb
}

// login runs the whole flow and returns the callback's response.
func (b *browser) login(handle, redirect string) response {
	b.t.Helper()
	return b.get(b.consent(b.startLogin(handle, redirect), handle))
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.app.server.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setCookie(c *http.Cookie) {
	u, _ := url.Parse(b.app.server.URL)
	b.jar.SetCookies(u, []*http.Cookie{c})
}

// withCookie sends one request with exactly the given session cookie value.
func (a *testApp) withCookie(method, path, value string) response {
	b := a.newBrowser()
	return b.do(method, path, nil, http.Header{"Cookie": {"sid=" + value}})
}

// observedClient is the real indigo adapter, counting how often the Manager
// hands it a callback, so tests can check the Manager's own protections
// independently of the adapter's.
type observedClient struct {
	*indigoclient.Client
	callbacks atomic.Int64
}

func (o *observedClient) Callback(ctx context.Context, params url.Values, ttl time.Duration) (*ginoauth.Grant, error) {
	o.callbacks.Add(1)
	return o.Client.Callback(ctx, params, ttl)
}

// clock is a settable clock for the Manager.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// faultyStorage passes through to a real Storage until told to fail, which
// is how a database outage looks to the library.
type faultyStorage struct {
	ginoauth.Storage
	down atomic.Bool
}

var errDown = errors.New("storage is down (injected fault)")

func (f *faultyStorage) Get(ctx context.Context, k string) ([]byte, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Storage.Get(ctx, k)
}

func (f *faultyStorage) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if f.down.Load() {
		return errDown
	}
	return f.Storage.Set(ctx, k, v, ttl)
}

func (f *faultyStorage) Delete(ctx context.Context, k string) error {
	if f.down.Load() {
		return errDown
	}
	return f.Storage.Delete(ctx, k)
}

func (f *faultyStorage) Take(ctx context.Context, k string) ([]byte, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Storage.(ginoauth.Taker).Take(ctx, k)
}
