package ginoauth

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

// Mount registers the prebuilt handlers on r at the paths in Config.Routes,
// the one way to mount them:
//
//	mgr.Mount(r)
//
//	GET  /login?handle=H&redirect=/path   302 to the authorization server
//	POST /login (form: handle, redirect)  same, for HTML forms (the body only,
//	                                      never the query); both also take
//	                                      server (start at a server, no handle)
//	                                      and prompt (login, select_account,
//	                                      consent, create)
//	                                      and add=1 (add an account to the
//	                                      browser's, see StartOptions.AddAccount)
//	GET|POST /login/upgrade?scope=S&redirect=/path  step-up: a new login of the
//	                                      user's account with more permissions
//	POST /api/accounts/switch {"did"}     200 {"success":true,"did","handle"}: that
//	                                      account of the browser becomes active;
//	                                      404 when the browser has none of it
//	POST /api/accounts/logout             200 {"success":true,"active":{did,handle}|null}:
//	                                      ends the active account only; the next
//	                                      one becomes active
//
// With Config.Mobile set, also the native-app routes (see MobileConfig):
//
//	POST /api/auth/mobile-start    {handle, code_challenge, code_challenge_method,
//	                               redirect_uri, state} -> {"authUrl": ...} (GET: 302)
//	POST /api/auth/mobile-token    {code, code_verifier, redirect_uri} -> the session token
//	POST /api/auth/mobile-refresh  (bearer) -> a new session token
//	GET  /mobile/refresh-token     (bearer) -> {"success", "payload": {"did", "sid"}}
//	GET  /oauth/callback                  completes the login, 302 to the return path
//	GET  /api/session                     200 {"valid":true,"did",...,"accounts":[...]}
//	                                      or 401 {"valid":false} (with "reason" and
//	                                      "login" when a new login fixes it)
//	POST /api/logout                      200 {"success":true}: ends every account of
//	                                      the browser; 303 to the form's
//	                                      redirect (default /) for an HTML form
//	GET  /oauth-client-metadata.json      the client metadata document
//	GET  /oauth/jwks.json                 the client's public keys
//
// The device routes (GET /api/sessions, POST /api/sessions/end,
// /end-others, /end-all) are mounted when the Storage has a
// storage.Indexer; the last two above only when the OAuth client has the
// oauthclient.MetadataProvider capability. Logout is POST only: a GET logout would let any
// page log users out with an <img> tag. r may be a group, to mount the
// routes under a prefix or behind middleware of the app's (the paths in
// Config.Routes are then relative to it).
func (m *Manager) Mount(r gin.IRouter) {
	rt := m.cfg.Routes
	routes := []struct {
		path    string
		methods []string
		h       gin.HandlerFunc
	}{
		{rt.Login, []string{http.MethodGet, http.MethodPost}, m.loginHandler()},
		{rt.Callback, []string{http.MethodGet}, m.callbackHandler()},
		{rt.Session, []string{http.MethodGet}, m.sessionHandler()},
		{rt.Logout, []string{http.MethodPost}, m.logoutHandler()},
		{rt.Upgrade, []string{http.MethodGet, http.MethodPost}, m.upgradeHandler()},
		{rt.SwitchAccount, []string{http.MethodPost}, m.switchAccountHandler()},
		{rt.LogoutAccount, []string{http.MethodPost}, m.logoutAccountHandler()},
	}
	if m.sessions.ix != nil {
		routes = append(routes, []struct {
			path    string
			methods []string
			h       gin.HandlerFunc
		}{
			{rt.Sessions, []string{http.MethodGet}, m.listSessionsHandler()},
			{rt.EndSession, []string{http.MethodPost}, m.endSessionsHandler("one")},
			{rt.EndOtherSessions, []string{http.MethodPost}, m.endSessionsHandler("others")},
			{rt.EndAllSessions, []string{http.MethodPost}, m.endSessionsHandler("all")},
		}...)
	}
	if m.cfg.Mobile.enabled() {
		routes = append(routes, []struct {
			path    string
			methods []string
			h       gin.HandlerFunc
		}{
			{rt.MobileStart, []string{http.MethodGet, http.MethodPost}, m.mobileStartHandler()},
			{rt.MobileToken, []string{http.MethodPost}, m.mobileTokenHandler()},
			{rt.MobileRefresh, []string{http.MethodPost}, m.mobileRefreshHandler(false)},
			{rt.MobileRefreshLegacy, []string{http.MethodGet}, m.mobileRefreshHandler(true)},
		}...)
	}
	if p, ok := m.client.(oauthclient.MetadataProvider); ok {
		routes = append(routes,
			struct {
				path    string
				methods []string
				h       gin.HandlerFunc
			}{rt.ClientMetadata, []string{http.MethodGet}, metadataHandler(p.ClientMetadata)},
			struct {
				path    string
				methods []string
				h       gin.HandlerFunc
			}{rt.JWKS, []string{http.MethodGet}, metadataHandler(p.PublicJWKS)})
	}
	// A group's prefix is known only now: a callback mounted elsewhere than
	// the redirect URI's path would answer logins with Gin's plain 404.
	if g, ok := r.(interface{ BasePath() string }); ok {
		if redirect, mounted := m.mountedCallbackMismatch(g.BasePath()); redirect != "" {
			m.log.Error("the callback is mounted at another path than the OAuth client's redirect URI: every login would end in 404; mount the routes so that the callback is at the redirect URI's path, or change Routes.Callback",
				"mounted", mounted, "redirect_uri", redirect)
		}
	}
	for _, route := range routes {
		for _, method := range route.methods {
			r.Handle(method, route.path, route.h)
		}
		// Every other method gets 405 with Allow, as JSON, instead of
		// Gin's plain-text 404.
		allow := strings.Join(route.methods, ", ")
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
			if !slices.Contains(route.methods, method) {
				r.Handle(method, route.path, methodNotAllowed(allow))
			}
		}
	}
}

func methodNotAllowed(allow string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Allow", allow)
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, gin.H{"error": "method not allowed; use " + allow, "code": codeMethodNotAllowed})
	}
}

// loginHandler starts a login from the handle query parameter (GET) or form
// field of the body (POST), with an optional redirect return path. Bad
// input gets 400 {"error": ...}.
func (m *Manager) loginHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		var f url.Values
		if c.Request.Method == http.MethodPost {
			if m.crossOrigin(c.Request) {
				m.refuseCrossSite(c) // login CSRF: a page elsewhere auto-posting the form
				return
			}
			var ok bool
			if f, ok = m.postForm(c); !ok {
				return
			}
		} else {
			var ok bool
			if f, ok = m.query(c); !ok {
				return
			}
			if m.confirmCrossSiteLogin(c, f) {
				return
			}
		}
		// Scopes are not taken from the request: they are the app's choice.
		opts := StartOptions{ReturnTo: f.Get("redirect"), Server: f.Get("server"), Prompt: f.Get("prompt"), AddAccount: f.Get("add") == "1"}
		authURL, err := m.StartOAuth(c, f.Get("handle"), opts)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, authURL)
	}
}

// query parses a GET's query string, answering a malformed one itself.
func (m *Manager) query(c *gin.Context) (url.Values, bool) {
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		m.abortWithError(c, &OAuthFlowError{Code: CodeInvalidRequest, Message: "the query could not be read", Err: err})
		return nil, false
	}
	return q, true
}

// callbackHandler completes a login and redirects (302) to the return path.
// Failures get 400 (502 when the authorization server is unreachable, 503
// when storage is): through Config.ErrorHandler when set, else a small HTML
// page for browsers and JSON otherwise.
func (m *Manager) callbackHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.answerSelfCheck(c) { // Manager.SelfCheck's signed probe
			return
		}
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
		if res.AppRedirect != "" {
			c.Redirect(http.StatusFound, res.AppRedirect) // a native app's registered redirect URI
			return
		}
		c.Redirect(http.StatusFound, res.ReturnTo)
	}
}

// sessionHandler answers 200 {"valid":true,"did":...,"handle":...,"scopes":[...],
// "accounts":[{"did","handle","active"},...]} for a logged-in request (the
// browser's accounts, see Manager.Accounts) and 401 {"valid":false}
// otherwise.
func (m *Manager) sessionHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "no-store")
		u, err := m.loadUser(c)
		if err == nil && u != nil {
			err = m.refreshScopes(c, u) // the granted scopes as of the last refresh
		}
		var se *SessionError
		if errors.As(err, &se) || (err == nil && u == nil) {
			body := gin.H{"valid": false}
			m.endedAnswer(c, u, err, body)
			c.JSON(http.StatusUnauthorized, body)
			return
		}
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		accounts, err := m.Accounts(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		out := gin.H{
			"valid": true, "did": u.DID, "handle": u.Handle, "scopes": u.Scopes,
			"expiresAt": u.ExpiresAt, "accounts": accounts,
		}
		if u.AccountStatus != "" {
			out["accountStatus"] = u.AccountStatus // kept by Config.KeepDeactivatedSessions
		}
		c.JSON(http.StatusOK, out)
	}
}

// logoutHandler ends the session (see Manager.Logout) and answers
// 200 {"success":true}; an HTML form gets 303 to the redirect field of
// its body.
func (m *Manager) logoutHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.crossOrigin(c.Request) {
			m.refuseCrossSite(c) // logout CSRF
			return
		}
		form, ok := m.postForm(c)
		if !ok {
			return
		}
		if err := m.Logout(c); err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		if wantsHTML(c) {
			// An HTML form: back to a page, not to raw JSON.
			c.Redirect(http.StatusSeeOther, safeReturnPath(form.Get("redirect")))
			return
		}
		c.JSON(http.StatusOK, gin.H{"success": true})
	}
}

// metadataHandler serves a document of the OAuth client (its metadata or
// its public keys: 200, application/json, never a redirect).
func metadataHandler(doc func() any) gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, doc()) }
}

// wantsHTML reports whether the client is a browser navigating (a form post
// or a link) rather than a script asking for JSON: its Accept header names
// text/html before, or without, application/json.
func wantsHTML(c *gin.Context) bool {
	accept := c.GetHeader("Accept")
	h := strings.Index(accept, "text/html")
	j := strings.Index(accept, "application/json")
	return h >= 0 && (j < 0 || h < j)
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
