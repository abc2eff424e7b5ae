package demoapp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
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

// HTMLErrors shows browsers an HTML page instead of the JSON error bodies
// ({"error": message, "code": code}) that ginoauth's middleware and
// prebuilt handlers answer with, keeping the status and the library's safe
// message. A failed login (the form's POST /login, or GET /login?handle=)
// gets the start page back with the message above the handle field. API clients, which do not ask for
// text/html, still get the JSON.
func (a *Pages) HTMLErrors() gin.HandlerFunc {
	return func(c *gin.Context) {
		if !strings.Contains(c.GetHeader("Accept"), "text/html") {
			c.Next()
			return
		}
		// The prebuilt callback handler renders a minimal HTML page of its
		// own for browsers; asking for JSON gets the same safe message in
		// a form this app can show in its own page (whose CSP also blocks
		// that page's inline style).
		c.Request.Header.Set("Accept", "application/json")
		w := &errorCapture{ResponseWriter: c.Writer}
		c.Writer = w
		c.Next()
		c.Writer = w.ResponseWriter
		if !w.capturing {
			// Gin answers unknown paths after the middleware, with a
			// plain-text 404, unless something was written.
			if !w.Written() && c.FullPath() == "" && w.Status() == http.StatusNotFound {
				renderError(c, http.StatusNotFound, "There is no page at this address.")
			}
			return
		}
		var body struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		isJSON := strings.HasPrefix(w.Header().Get("Content-Type"), "application/json")
		if !isJSON || json.Unmarshal(w.buf.Bytes(), &body) != nil || body.Error == "" {
			// Not one of the library's JSON errors: send it as it was.
			w.ResponseWriter.WriteHeader(w.status)
			_, _ = w.ResponseWriter.Write(w.buf.Bytes())
			return
		}
		msg := friendlyMessage(w.status, body.Code, body.Error)
		if c.Request.URL.Path == a.mgr.Config().Routes.Login {
			a.renderStartPage(c, w.status, c.Request.FormValue("handle"), msg)
			return
		}
		if c.Request.URL.Path == a.mgr.Config().Routes.Callback {
			render(c, w.status, "error.html", pageData{Title: "Login failed", Status: w.status, Error: msg})
			return
		}
		renderError(c, w.status, msg)
	}
}

// friendlyMessage turns the library's short messages into sentences for
// the page. The library's messages are already safe to show.
func friendlyMessage(status int, code, msg string) string {
	switch {
	case status == http.StatusServiceUnavailable:
		return "The session store is unavailable right now, so logins cannot be checked. Please try again in a moment."
	case code == "not_logged_in":
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

// errorCapture holds back error responses (status >= 400) so HTMLErrors can
// replace them; everything else passes straight through.
type errorCapture struct {
	gin.ResponseWriter
	status    int
	capturing bool
	buf       bytes.Buffer
}

func (w *errorCapture) WriteHeader(code int) {
	if code >= 400 && !w.ResponseWriter.Written() {
		w.status, w.capturing = code, true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorCapture) WriteHeaderNow() {
	if !w.capturing {
		w.ResponseWriter.WriteHeaderNow()
	}
}

func (w *errorCapture) Write(b []byte) (int, error) {
	if w.capturing {
		return w.buf.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *errorCapture) WriteString(s string) (int, error) {
	if w.capturing {
		return w.buf.WriteString(s)
	}
	return w.ResponseWriter.WriteString(s)
}

func (w *errorCapture) Status() int {
	if w.capturing {
		return w.status
	}
	return w.ResponseWriter.Status()
}

func (w *errorCapture) Written() bool {
	return w.capturing || w.ResponseWriter.Written()
}
