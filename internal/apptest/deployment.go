package apptest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// DeploymentClientID is the client_id of a Deployment.
const DeploymentClientID = "https://app.test/oauth-client-metadata.json"

// Deployment is one confidential client run as several app instances
// behind a load balancer, as in production, for tests of client key
// rotation against ginoauthtest. The authorization server fetches the
// client's metadata (its JWKS) from https://app.test through the balancer,
// so from any instance, at every request of the client, and ends the
// sessions whose key has left it; the redirect URI is the balancer's, so a
// login's callback may land on another instance than its start. Each
// instance has a key set of its own, as instances have during a rolling
// deploy; Start replaces one.
type Deployment struct {
	T      testing.TB
	AS     *ginoauthtest.Server
	Gate   *Gate // every request of every instance's OAuth client
	Config oauth.ClientConfig
	LB     *httptest.Server

	mu       sync.Mutex
	slots    []*App
	next     int
	metaSlot int // the instance serving the metadata, or -1: any
	events   []ginoauth.Event
}

// NewDeployment starts the load balancer for up to instances instances and
// points as at it for the client's metadata.
func NewDeployment(t testing.TB, as *ginoauthtest.Server, instances int) *Deployment {
	t.Helper()
	d := &Deployment{T: t, AS: as, Gate: &Gate{Base: as.HTTPClient().Transport}, slots: make([]*App, instances), metaSlot: -1}
	d.LB = httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(d.target(pr.In.URL.Path))
		pr.Out.Host = pr.In.Host
	}})
	t.Cleanup(d.LB.Close)
	d.Config = oauth.NewPublicConfig(DeploymentClientID, d.LB.URL+"/oauth/callback", Scopes)
	as.SetClientMetadataClient(as.HTTPClient())
	if err := as.Route("https://app.test", d.LB.URL); err != nil {
		t.Fatal(err)
	}
	return d
}

// target picks the instance for a request to the balancer: the pinned one
// for the metadata, else the next one in turn.
func (d *Deployment) target(path string) *url.URL {
	d.mu.Lock()
	defer d.mu.Unlock()
	pick := -1
	if d.metaSlot >= 0 && (path == "/oauth-client-metadata.json" || path == "/oauth/jwks.json") {
		pick = d.metaSlot
	}
	for i := 0; pick < 0 && i < len(d.slots); i++ {
		if d.next = (d.next + 1) % len(d.slots); d.slots[d.next] != nil {
			pick = d.next
		}
	}
	if pick < 0 || d.slots[pick] == nil {
		return &url.URL{Scheme: "http", Host: "127.0.0.1:1"} // nothing listens: 502
	}
	u, _ := url.Parse(d.slots[pick].Server.URL)
	return u
}

// Start starts an instance on store with keys in slot, replacing (and
// stopping) the instance there: one step of a rolling deploy.
func (d *Deployment) Start(slot int, store storage.Store, keys *indigoclient.KeySet, modify ...func(*Options)) *App {
	d.T.Helper()
	cfg := d.Config
	opts := Options{
		Storage:      store,
		HTTPClient:   &http.Client{Transport: d.Gate},
		Directory:    d.AS.Directory(),
		Consent:      d.AS.Consent,
		ClientConfig: &cfg,
		ClientKeys:   keys,
		Configure: func(c *ginoauth.Config) {
			c.OnEvent = func(e ginoauth.Event) {
				d.mu.Lock()
				defer d.mu.Unlock()
				d.events = append(d.events, e)
			}
		},
	}
	for _, m := range modify {
		m(&opts)
	}
	a := New(d.T, opts)
	d.mu.Lock()
	old := d.slots[slot]
	d.slots[slot] = a
	d.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	return a
}

// Instance is the instance in slot.
func (d *Deployment) Instance(slot int) *App {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.slots[slot]
}

// PinMetadata makes the balancer send every metadata request to the
// instance in slot (-1: to any, in turn).
func (d *Deployment) PinMetadata(slot int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.metaSlot = slot
}

// Events returns a copy of the events every instance has emitted so far.
func (d *Deployment) Events() []ginoauth.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]ginoauth.Event(nil), d.events...)
}

// JWKS fetches the instance's /oauth/jwks.json and returns its keys as raw
// JSON objects (so a test sees every member, private ones included).
func (d *Deployment) JWKS(slot int) []map[string]any {
	d.T.Helper()
	resp, err := http.Get(d.Instance(slot).Server.URL + "/oauth/jwks.json") //nolint:noctx // a test's loopback request
	if err != nil {
		d.T.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&set) != nil {
		d.T.Fatalf("jwks of instance %d: HTTP %d", slot, resp.StatusCode)
	}
	return set.Keys
}

// Stop stops the app (its server, Manager and OAuth client), as a process
// that exits cleanly; stopping again does nothing.
func (a *App) Stop() {
	a.Server.Close()
	_ = a.Manager.Close()
	_ = a.Client.Close()
}
