package demoapp

import (
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// recovery turns a panic into a 500 page and an error log line. Gin's own
// Recovery is not used because in debug mode it prints the request's
// headers, cookies included.
func recovery(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in handler", "route", c.FullPath(), "panic", v, "stack", string(debug.Stack()))
				if !c.Writer.Written() {
					renderError(c, http.StatusInternalServerError, "Something went wrong on our side. Please try again.")
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}

// requestLog logs one line per request. It logs the route pattern, not the
// URL: the OAuth callback's query carries the authorization code and state,
// which have no place in logs.
func requestLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "(no route)"
		}
		level := slog.LevelInfo
		if c.Writer.Status() >= 500 {
			level = slog.LevelError
		}
		log.Log(c.Request.Context(), level, "request", "method", c.Request.Method, "route", route,
			"status", c.Writer.Status(), "duration", time.Since(start).Round(time.Microsecond))
	}
}

// securityHeaders are the usual hardening headers for server-rendered pages.
// There is deliberately no form-action directive: browsers apply it to the
// redirect that follows the login form, which goes to the authorization
// server. Referrer-Policy same-origin (not no-referrer) keeps the Origin
// header on same-origin form posts, which sameOrigin checks.
func securityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		c.Next()
	}
}

// canonicalHost sends browsers that opened a loopback app under another
// name (http://localhost:8080) to the base URL (http://127.0.0.1:8080). The
// OAuth redirect comes back to 127.0.0.1, and cookies are per host name, so
// a login started on "localhost" would otherwise look lost. Only GET and
// HEAD are redirected; public deployments (https) are left to the proxy.
func canonicalHost(baseURL string) gin.HandlerFunc {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "http" {
		return func(c *gin.Context) { c.Next() }
	}
	return func(c *gin.Context) {
		m := c.Request.Method
		if c.Request.Host != u.Host && (m == http.MethodGet || m == http.MethodHead) {
			c.Redirect(http.StatusFound, baseURL+c.Request.URL.RequestURI())
			c.Abort()
			return
		}
		c.Next()
	}
}

// sameOrigin refuses state-changing requests sent by other sites. The
// session cookie is SameSite=Lax, so a cross-site form post arrives without
// it anyway; this check makes the refusal explicit and does not depend on
// the browser's cookie policy.
func sameOrigin(baseURL string) gin.HandlerFunc {
	return func(c *gin.Context) {
		origin := c.GetHeader("Origin")
		if c.GetHeader("Sec-Fetch-Site") == "cross-site" || (origin != "" && origin != baseURL) {
			renderError(c, http.StatusForbidden, "This form was sent from another site, so it was refused. Go back to the app and try again.")
			c.Abort()
			return
		}
		c.Next()
	}
}

// ErrorPages is the Manager's Config.ErrorHandler for the example app: a
// failed login (the form's POST /login, or GET /login?handle=) gets the start
// page back with the message above the handle field, other failures an error
// page, each with the status and the safe message the library chose. API
// clients, which do not ask for text/html, get the library's JSON.
func ErrorPages(opts PageOptions) func(*gin.Context, ginoauth.ErrorResponse) {
	return func(c *gin.Context, e ginoauth.ErrorResponse) {
		if !strings.Contains(c.GetHeader("Accept"), "text/html") {
			c.JSON(e.Status, gin.H{"error": e.Message, "code": e.Code})
			return
		}
		msg := friendlyMessage(e.Status, e.Code, e.Message)
		switch c.FullPath() {
		case loginPath:
			render(c, e.Status, "start.html", startData(opts, c.Request.FormValue("handle"), msg))
		case callbackPath:
			render(c, e.Status, "error.html", pageData{Title: "Login failed", Status: e.Status, Error: msg})
		default:
			renderError(c, e.Status, msg)
		}
	}
}

// The example mounts the library's routes on their default paths.
const (
	loginPath    = "/login"
	callbackPath = "/oauth/callback"
)

// friendlyMessage turns the library's short messages into sentences for
// the page. The library's messages are already safe to show.
func friendlyMessage(status int, code ginoauth.ErrorCode, msg string) string {
	switch {
	case status == http.StatusServiceUnavailable:
		return "The session store is unavailable right now, so logins cannot be checked. Please try again in a moment."
	case code == ginoauth.CodeNotLoggedIn:
		return "You need to log in first."
	}
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
		if !strings.HasSuffix(msg, ".") {
			msg += "."
		}
	}
	return msg
}
