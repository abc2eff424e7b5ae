package ginoauth

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// maxFormBytes bounds POST bodies the prebuilt handlers read.
const maxFormBytes = 16 << 10

// Mount registers the prebuilt handlers on r at the paths in Config.Routes:
//
//	GET  /login?handle=H&redirect=/path   302 to the authorization server
//	POST /login (form: handle, redirect)  same, for HTML forms
//	GET  /oauth/callback                  completes the login, 302 to the return path
//	GET  /api/session                     200 {"valid":true,"did",...} or 401 {"valid":false}
//	POST /api/logout                      200 {"success":true}
//	GET  /oauth-client-metadata.json      the client metadata document
//	GET  /oauth/jwks.json                 the client's public keys
//
// The last two are mounted only when the OAuth client implements
// ClientMetadataProvider. Logout is POST only: a GET logout would let any
// page log users out with an <img> tag. r may be a group, to mount the
// routes under a prefix or behind middleware of the app's (the paths in
// Config.Routes are then relative to it).
func (m *Manager) Mount(r gin.IRouter) {
	rt := m.cfg.Routes
	r.GET(rt.Login, m.loginHandler())
	r.POST(rt.Login, m.loginHandler())
	r.GET(rt.Callback, m.callbackHandler())
	r.GET(rt.Session, m.sessionHandler())
	r.POST(rt.Logout, m.logoutHandler())
	if p, ok := m.client.(ClientMetadataProvider); ok {
		r.GET(rt.ClientMetadata, metadataHandler(p.ClientMetadata))
		r.GET(rt.JWKS, metadataHandler(p.PublicJWKS))
	}
}

// loginHandler starts a login from the handle query parameter (GET) or form
// field (POST), with an optional redirect return path. Bad input gets
// 400 {"error": ...}.
func (m *Manager) loginHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		handle, redirect := c.Query("handle"), c.Query("redirect")
		if c.Request.Method == http.MethodPost {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
			if err := c.Request.ParseForm(); err != nil {
				m.abortWithError(c, &OAuthFlowError{Code: FlowInvalidRequest, Message: "the login form could not be read", Err: err})
				return
			}
			handle, redirect = c.Request.PostForm.Get("handle"), c.Request.PostForm.Get("redirect")
		}
		authURL, err := m.StartOAuth(c, handle, StartOptions{ReturnTo: redirect})
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, authURL)
	}
}

// callbackHandler completes a login and redirects (302) to the return path.
// Failures get 400 (502 when the authorization server is unreachable, 503
// when storage is): through Config.ErrorHandler when set, else a small HTML
// page for browsers and JSON otherwise.
func (m *Manager) callbackHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		res, err := m.HandleCallback(c)
		if err != nil {
			if m.cfg.ErrorHandler == nil && wantsHTML(c) {
				m.renderCallbackError(c, err)
				return
			}
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, res.ReturnTo)
	}
}

// sessionHandler answers 200 {"valid":true,"did":...,"handle":...,"scopes":[...]}
// for a logged-in request and 401 {"valid":false} otherwise.
func (m *Manager) sessionHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		u, err := m.loadUser(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		if u == nil {
			c.JSON(http.StatusUnauthorized, gin.H{"valid": false})
			return
		}
		c.JSON(http.StatusOK, gin.H{
			"valid": true, "did": u.DID, "handle": u.Handle, "scopes": u.Scopes,
			"expiresAt": u.ExpiresAt,
		})
	}
}

// logoutHandler ends the session (see Manager.Logout) and answers
// 200 {"success":true}.
func (m *Manager) logoutHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := m.Logout(c); err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, gin.H{"success": true})
	}
}

// metadataHandler serves a document of the OAuth client (its metadata or
// its public keys: 200, application/json, never a redirect).
func metadataHandler(doc func() any) gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, doc()) }
}

func wantsHTML(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "text/html")
}

var callbackErrorPage = template.Must(template.New("err").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Login failed</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
a{color:#2563eb}</style></head>
<body><h1>Login failed</h1><p>{{.}}</p><p><a href="/">Back to the start page</a></p></body></html>`))

// renderCallbackError shows the same safe message abortWithError would send,
// as a page a person can act on.
func (m *Manager) renderCallbackError(c *gin.Context, err error) {
	r := m.replyFor(c, err)
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(r.Status)
	_ = callbackErrorPage.Execute(c.Writer, r.Message)
	c.Abort()
}
