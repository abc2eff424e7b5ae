package ginoauth

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// The cross-origin check of state-changing requests is the standard
// library's http.CrossOriginProtection, with the origin of Config.BaseURL
// and Config.AllowedOrigins as its trusted origins. Modern browsers (all
// since 2023) say where a request comes from in Sec-Fetch-Site: same-origin
// and none (typed, bookmarked) pass, same-site and cross-site pass only from
// a trusted Origin. Older browsers send only Origin, which passes when it is
// trusted, or when its host is the request's Host (a proxy that rewrites
// Host makes the two differ, which is why BaseURL's origin is trusted
// explicitly). Requests with neither header (non-browser clients) pass: the
// session cookie's SameSite=Lax is their protection.

// newOriginCheck builds the check for an app at origin.
func newOriginCheck(origin string, allowed []string) (*http.CrossOriginProtection, error) {
	p := http.NewCrossOriginProtection()
	for _, o := range append([]string{origin}, allowed...) {
		if err := p.AddTrustedOrigin(o); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// canonicalOrigin is the origin of u as browsers send it in Origin:
// lower-case scheme and host, no default port.
func canonicalOrigin(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	defaultPort := scheme == "https" && port == "443" || scheme == "http" && port == "80"
	if port != "" && !defaultPort {
		host += ":" + port
	}
	return scheme + "://" + host
}

// crossOrigin reports whether a state-changing request (any method but
// GET, HEAD and OPTIONS) comes from a page the app does not trust.
func (m *Manager) crossOrigin(r *http.Request) bool {
	return m.originCheck.Check(r) != nil
}

// fromOtherSite reports whether the browser says a request, whatever its
// method, comes from a page the app does not trust: the same check, applied
// to a GET as if it changed state. A login link followed from another site
// (Sec-Fetch-Site: cross-site, or same-site from a sibling subdomain; links
// carry no Origin, so even an allowed origin's links count) is one.
func (m *Manager) fromOtherSite(r *http.Request) bool {
	probe := *r // shallow: only the method differs
	probe.Method = http.MethodPost
	return m.originCheck.Check(&probe) != nil
}

// RequireSameOrigin protects the app's own state-changing routes from
// cross-site request forgery, with the check the prebuilt ones use (the
// standard library's http.CrossOriginProtection, trusting Config.BaseURL
// and Config.AllowedOrigins): a POST, PUT, PATCH or DELETE that the
// browser says came from another origin is answered 403 with code
// cross_site_request, through Config.ErrorHandler. GET, HEAD and OPTIONS
// pass. This is the defence the IETF's OAuth for browser-based apps asks of
// a backend-for-frontend, whose cookies ride along with every request.
//
//	api := r.Group("/api", ginoauth.RequireSameOrigin(mgr))
func RequireSameOrigin(mgr *Manager) gin.HandlerFunc {
	return func(c *gin.Context) {
		if mgr.crossOrigin(c.Request) {
			mgr.refuseCrossSite(c)
			return
		}
		c.Next()
	}
}

// refuseCrossSite answers a request the origin check refused. The log
// names what the browser sent and what the app expected (headers only,
// nothing secret), since a misconfigured BaseURL looks exactly like an
// attack; on a loopback BaseURL (development) the answer itself names the
// likely fix.
func (m *Manager) refuseCrossSite(c *gin.Context) {
	r := c.Request
	origin, site := r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site")
	if len(origin) > 256 {
		origin = origin[:256] + "..."
	}
	if !slices.Contains([]string{"", "cross-site", "same-site", "same-origin", "none"}, site) {
		site = "(not a Sec-Fetch-Site value)"
	}
	m.log.Warn("cross-origin request refused", "path", r.URL.Path, "method", r.Method,
		"origin", origin, "sec_fetch_site", site, "host", r.Host,
		"expected_origin", m.origin, "allowed_origins", m.cfg.AllowedOrigins)
	var e crossSiteError
	if u, err := url.Parse(m.cfg.BaseURL); err == nil && isLoopbackHost(u.Hostname()) {
		// Only what parses as an origin is echoed.
		from := "another site (Sec-Fetch-Site: " + site + ")"
		if ou, err := url.Parse(origin); err == nil && ou.Scheme != "" && ou.Host != "" {
			from = canonicalOrigin(ou)
		}
		e.hint = "BaseURL is " + m.origin + " but the request came from " + from + ": open the app at " + m.origin + ", or change BaseURL"
	}
	m.abortWithError(c, e)
}

// confirmLoginPage asks the user to confirm a login that another site
// started (a link or a redirect to /login?handle=...): without it, any page
// could log a visitor in to an account of the attacker's choosing.
var confirmLoginPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in?</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
button{font:inherit;padding:.5rem 1rem;margin-right:.5rem}</style></head>
<body><h1>Log in?</h1>
<p>Another site sent you here to log in{{if .Handle}} as <strong>{{.Handle}}</strong>{{end}}{{if .Server}} at <strong>{{.Server}}</strong>{{end}}. Continue only if you meant to.</p>
<form method="post" action="{{.Action}}">
{{range $k, $v := .Fields}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<button type="submit">Continue</button><a href="/">Cancel</a>
</form></body></html>`))

// confirmCrossSiteLogin answers a login started from another site with a
// page the user must confirm (a same-origin POST), and reports whether it
// did.
func (m *Manager) confirmCrossSiteLogin(c *gin.Context, form url.Values) bool {
	if c.Request.Method != http.MethodGet || !m.fromOtherSite(c.Request) {
		return false
	}
	fields := map[string]string{}
	for _, k := range []string{"handle", "server", "prompt", "redirect"} {
		if v := form.Get(k); v != "" {
			fields[k] = v
		}
	}
	c.Header("Cache-Control", "no-store")
	if !strings.Contains(c.GetHeader("Accept"), "text/html") {
		c.AbortWithStatusJSON(http.StatusForbidden, gin.H{"error": "a login started from another site must be confirmed", "code": CodeCrossSite})
		return true
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	_ = confirmLoginPage.Execute(c.Writer, map[string]any{
		"Handle": fields["handle"], "Server": fields["server"], "Fields": fields, "Action": c.Request.URL.Path,
	})
	c.Abort()
	return true
}
