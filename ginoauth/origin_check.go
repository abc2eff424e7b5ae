package ginoauth

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// fromOtherSite reports whether the browser says a request comes from a
// page of another site: Fetch Metadata (Sec-Fetch-Site cross-site or
// same-site: a sibling subdomain is another site for our cookies), or an
// Origin header that is not the app's (or one of Config.AllowedOrigins).
// Requests with neither header (non-browser clients, very old browsers)
// pass: the session cookie's SameSite=Lax is their protection.
func (m *Manager) fromOtherSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	return origin != m.origin && !slices.Contains(m.cfg.AllowedOrigins, origin)
}

// RequireSameOrigin protects the app's own state-changing routes from
// cross-site request forgery, on the same principle as the prebuilt ones:
// a POST, PUT, PATCH or DELETE that the browser says came from another
// site (Fetch Metadata, or an Origin other than Config.BaseURL and
// Config.AllowedOrigins) is answered 403 with code cross_site_request,
// through Config.ErrorHandler. Safe methods pass. This is the defence the
// IETF's OAuth for browser-based apps asks of a backend-for-frontend, whose
// cookies ride along with every request.
//
//	api := r.Group("/api", ginoauth.RequireSameOrigin(mgr))
func RequireSameOrigin(mgr *Manager) gin.HandlerFunc {
	return func(c *gin.Context) {
		if isStateChanging(c.Request.Method) && mgr.fromOtherSite(c.Request) {
			mgr.refuseCrossSite(c)
			return
		}
		c.Next()
	}
}

func isStateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

func (m *Manager) refuseCrossSite(c *gin.Context) {
	m.abortWithError(c, crossSiteError{})
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
