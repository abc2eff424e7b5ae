package apptest

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Gate is an http.RoundTripper that can hold one chosen outgoing request
// of the OAuth client at a chosen moment (before it is sent, or after the
// server answered), so a test can run other requests in between: a fault
// injected at the worst moment.
type Gate struct {
	Base http.RoundTripper

	mu   sync.Mutex
	trap *trap
}

type trap struct {
	match   func(*http.Request) bool
	after   bool
	arrived chan struct{}
	release chan struct{}
}

// Hold arms the gate for the next request that match accepts. With
// afterResponse the request reaches the server and the gate holds its
// answer; otherwise it holds the request before it is sent. arrived is
// closed when the request is held; call release to let it go on.
func (g *Gate) Hold(match func(*http.Request) bool, afterResponse bool) (arrived <-chan struct{}, release func()) {
	tr := &trap{match: match, after: afterResponse, arrived: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	g.trap = tr
	g.mu.Unlock()
	var once sync.Once
	return tr.arrived, func() { once.Do(func() { close(tr.release) }) }
}

// RoundTrip implements http.RoundTripper.
func (g *Gate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	tr := g.trap
	if tr != nil && tr.match(req) {
		g.trap = nil
	} else {
		tr = nil
	}
	g.mu.Unlock()
	if tr == nil {
		return g.Base.RoundTrip(req)
	}
	if !tr.after {
		close(tr.arrived)
		<-tr.release
		return g.Base.RoundTrip(req)
	}
	resp, err := g.Base.RoundTrip(req)
	close(tr.arrived)
	<-tr.release
	return resp, err
}

// IsRefreshGrant matches token requests of the refresh_token grant.
func IsRefreshGrant(req *http.Request) bool {
	if req.URL.Path != "/oauth/token" || req.GetBody == nil {
		return false
	}
	body, err := req.GetBody()
	if err != nil {
		return false
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return false
	}
	form, err := url.ParseQuery(string(raw))
	return err == nil && form.Get("grant_type") == "refresh_token"
}

// IsPDSCall matches XRPC calls to the PDS.
func IsPDSCall(req *http.Request) bool { return strings.HasPrefix(req.URL.Path, "/xrpc/") }
