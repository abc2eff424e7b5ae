package refpds

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTPClient returns a client whose transport sends https://<Hostname>/...
// (https://pds.test/...) to the PDS on http://127.0.0.1:<port>/..., keeping
// "Host: <Hostname>", and refuses every other destination with an error.
// It ignores proxy settings. Use it for indigo's ClientApp.Client and
// ClientApp.Resolver.Client (a new client each call; they share nothing but
// the transport's settings).
func (e *Env) HTTPClient() *http.Client {
	return &http.Client{Transport: e.Transport(), Timeout: 30 * time.Second}
}

// Transport is the [http.RoundTripper] inside [Env.HTTPClient], for callers
// that build their own client (a cookie jar, no redirects, ...).
func (e *Env) Transport() http.RoundTripper {
	addr := strings.TrimPrefix(e.PDSURL, "http://")
	return &loopbackTransport{
		hostname: e.Hostname,
		addr:     addr,
		base: &http.Transport{
			Proxy:               nil, // never through a proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

type loopbackTransport struct {
	hostname string // pds.test
	addr     string // 127.0.0.1:port
	base     http.RoundTripper
}

func (t *loopbackTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := strings.ToLower(req.URL.Host)
	if req.URL.Scheme != "https" || (host != t.hostname && host != t.hostname+":443") {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("refpds: refusing %s %s://%s: only https://%s is served (by the reference PDS on %s)",
			req.Method, req.URL.Scheme, req.URL.Host, t.hostname, t.addr)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = "http"
	out.URL.Host = t.addr
	out.Host = t.hostname
	return t.base.RoundTrip(out)
}
