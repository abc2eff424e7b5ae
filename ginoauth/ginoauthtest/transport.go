package ginoauthtest

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// HTTPClient returns an HTTP client for OAuth clients under test. Its
// transport sends requests for https://<host>/... to this server's loopback
// listener over plain HTTP, keeping the Host header (<host>) and the path,
// so the server sees the request as sent to https://<host>. Requests to
// origins added with [Server.Route] go to their targets the same way. Every
// other destination is refused with an error: a test cannot reach the
// network by accident, and a client that builds a wrong URL fails loudly.
//
// This is what lets indigo's resolver, which accepts only https URLs
// without a port, run against a loopback server. Set it on both
// ClientApp.Client and ClientApp.Resolver.Client.
//
// Each call returns a new *http.Client (30 s timeout) sharing one transport.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: &routingTransport{s: s}, Timeout: 30 * time.Second}
}

// Route lets [Server.HTTPClient] reach another origin: requests for origin
// (such as "https://app.test", scheme and host, with a port only if the URLs
// will carry one) are sent to target (such as an httptest.Server URL,
// "http://127.0.0.1:41234"), keeping the Host header. Use it, for example,
// to serve a confidential client's metadata document from your app while
// the server fetches it (see [Server.SetClientMetadataClient]).
func (s *Server) Route(origin, target string) error {
	ou, err := url.Parse(origin)
	if err != nil || ou.Scheme == "" || ou.Host == "" || (ou.Path != "" && ou.Path != "/") {
		return fmt.Errorf("ginoauthtest: Route: origin %q must be scheme://host[:port]", origin)
	}
	tu, err := url.Parse(target)
	if err != nil || (tu.Scheme != "http" && tu.Scheme != "https") || tu.Host == "" || (tu.Path != "" && tu.Path != "/") {
		return fmt.Errorf("ginoauthtest: Route: target %q must be http(s)://host:port", target)
	}
	key := strings.ToLower(ou.Scheme + "://" + ou.Host)
	if key == strings.ToLower(s.issuer) {
		return fmt.Errorf("ginoauthtest: Route: %s is the server itself", origin)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[key] = tu.Scheme + "://" + tu.Host
	return nil
}

type routingTransport struct{ s *Server }

func (t *routingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target, err := t.s.routeFor(req.URL)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	tu, _ := url.Parse(target)
	out := req.Clone(req.Context())
	out.URL.Scheme = tu.Scheme
	out.URL.Host = tu.Host
	out.Host = req.URL.Host
	return t.s.transport.RoundTrip(out)
}

func (s *Server) routeFor(u *url.URL) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	host := strings.ToLower(u.Host)
	if u.Scheme == "https" && (host == s.host || host == s.host+":443" || s.pdsHosts[strings.TrimSuffix(host, ":443")]) {
		if s.baseURL == "" {
			return "", fmt.Errorf("ginoauthtest: %s is not started (call Start)", s.issuer)
		}
		return s.baseURL, nil
	}
	if target, ok := s.routes[strings.ToLower(u.Scheme)+"://"+host]; ok {
		return target, nil
	}
	allowed := []string{s.issuer}
	for o := range s.routes {
		allowed = append(allowed, o)
	}
	sort.Strings(allowed[1:])
	return "", fmt.Errorf("ginoauthtest: refusing request to %s://%s: the test HTTP client only reaches %s", u.Scheme, u.Host, strings.Join(allowed, ", "))
}
