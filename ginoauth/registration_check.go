package ginoauth

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

// A Config that disagrees with its OAuth client's registration passes
// every check of its own and fails only after the consent screen: the
// authorization server sends the browser to the redirect URI, which is on
// another origin than the login started on (its flow cookie stays behind,
// 403) or on a path nothing is mounted on (Gin's plain 404). New compares
// the two when the client reports its registration
// (oauthclient.RegistrationReporter) and names both values and the fix.

// isLoopbackClientID reports whether id is a loopback development client's
// (http://localhost, with an optional query), whose metadata no server
// fetches.
func isLoopbackClientID(id string) bool {
	u, err := url.Parse(id)
	return err == nil && u.Scheme == "http" && u.Host == "localhost" && (u.Path == "" || u.Path == "/")
}

// registrationProblems compares cfg (defaulted and validated) with the
// OAuth client's registration; it also returns a warning for what only
// some authorization servers refuse: an https client id whose redirect URI
// is plain http on loopback, which local test servers (ginoauthtest)
// accept and the reference PDS does not (web clients use https redirects).
func registrationProblems(cfg Config) (warning string, err error) {
	rr, ok := cfg.OAuthClient.(oauthclient.RegistrationReporter)
	if !ok {
		return "", nil
	}
	reg := rr.Registration()
	if len(reg.RedirectURIs) == 0 {
		return "", nil
	}
	bad := func(field, format string, args ...any) (string, error) {
		return "", &ConfigurationError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	base := cfg.origin()
	redirect := reg.RedirectURIs[0]
	ru, err := url.Parse(redirect)
	if err != nil || ru.Host == "" {
		return bad("OAuthClient", "its redirect URI %q is not an absolute URL such as %s%s", redirect, base, cfg.Routes.Callback)
	}
	redirectOrigin := canonicalOrigin(ru)
	loopbackClient := isLoopbackClientID(reg.ClientID)
	baseURL, _ := url.Parse(cfg.BaseURL)
	switch {
	case strings.HasPrefix(reg.ClientID, "https://") && baseURL.Scheme == "http" && ru.Scheme == "https":
		return bad("BaseURL", "is %s (plain http) but the OAuth client's id %s is an https metadata URL, whose logins come back to %s; "+
			"set BaseURL to %s, or for development on this machine build the client with indigoclient.LocalhostConfig(%q, scopes)",
			base, reg.ClientID, redirect, redirectOrigin, base+cfg.Routes.Callback)
	case loopbackClient && baseURL.Scheme == "https":
		return bad("BaseURL", "is %s (https) but the OAuth client is a loopback development client (client id http://localhost...), "+
			"whose logins come back to the plain http redirect URI %s (RFC 8252 loopback redirects are http); set BaseURL to %s",
			base, redirect, redirectOrigin)
	case redirectOrigin != base:
		hint := ""
		if bh := baseURL.Hostname(); bh == "localhost" && isLoopbackHost(ru.Hostname()) {
			hint = fmt.Sprintf(" (loopback redirect URIs are IP literals, RFC 8252 section 8.3: open the app at %s, not on localhost)", redirectOrigin)
		}
		return bad("BaseURL", "is %s but the OAuth client's redirect URI %s is on %s: a login started on one origin would come back to the other "+
			"without its flow cookie and be refused; set BaseURL to %s%s, or build the client with the redirect URI %s",
			base, redirect, redirectOrigin, redirectOrigin, hint, base+ru.EscapedPath())
	}
	path := ru.Path
	if path == "" {
		path = "/"
	}
	// The routes may be mounted under a group's prefix (Mount checks the
	// whole path then), so a redirect path that ends with the route passes.
	if path != cfg.Routes.Callback && !strings.HasSuffix(path, "/"+strings.TrimPrefix(cfg.Routes.Callback, "/")) {
		return bad("Routes.Callback", "is %q but the OAuth client's redirect URI %s has the path %q: the authorization server would send every login to a route "+
			"nothing answers (404); set Routes.Callback to %q, or build the client with the redirect URI %s",
			cfg.Routes.Callback, redirect, path, path, redirectOrigin+cfg.Routes.Callback)
	}
	if strings.HasPrefix(reg.ClientID, "https://") && ru.Scheme == "http" {
		warning = "the OAuth client's id " + reg.ClientID + " is an https metadata URL but its redirect URI " + redirect +
			" is plain http: authorization servers such as the reference PDS refuse it (only local test servers accept it); use https, or indigoclient.LocalhostConfig for development"
	}
	return warning, nil
}

// mountedCallbackMismatch returns, for routes mounted under basePath, the
// redirect URI the authorization server will send logins to when it is not
// where the callback is mounted, and that whole path; "" when they agree or
// the client does not say.
func (m *Manager) mountedCallbackMismatch(basePath string) (redirect, mounted string) {
	rr, ok := m.client.(oauthclient.RegistrationReporter)
	if !ok {
		return "", ""
	}
	reg := rr.Registration()
	if len(reg.RedirectURIs) == 0 {
		return "", ""
	}
	ru, err := url.Parse(reg.RedirectURIs[0])
	if err != nil {
		return "", ""
	}
	mounted = strings.TrimRight(basePath, "/") + m.cfg.Routes.Callback
	if ru.Path == mounted {
		return "", ""
	}
	return reg.RedirectURIs[0], mounted
}
