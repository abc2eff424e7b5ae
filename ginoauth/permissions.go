package ginoauth

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

// This file is about permissions: which scopes a session was granted, whether
// they cover what a route needs, and the step-up that asks for more.

// Allows reports whether the session's granted scopes cover perm, a
// permission in the AT Protocol scope syntax: atproto,
// repo:<collection>[?action=...], rpc:<method>?aud=..., blob:<mime>,
// account:<attr>[?action=...], identity:<attr>, a transition: scope, or
// include:<permission set> (covered when every permission of the set is).
// The granted scopes are those of the session's last token refresh: a
// refresh that changes them (the user withdrew a permission, a permission
// set grants less) writes them to the device session's record, which every
// session check reads, so Allows answers from them in any route, guarded by
// RequireAuth alone or not guarded at all. A set is resolved through the
// OAuth client's oauthclient.PermissionSetResolver capability.
func (u *User) Allows(perm string) bool {
	ok, err := u.allows(context.Background(), perm)
	return ok && err == nil
}

func (u *User) allows(ctx context.Context, perm string) (bool, error) {
	if strings.HasPrefix(perm, "include:") {
		return u.coversSet(ctx, perm)
	}
	return covers(u.Scopes, perm), nil
}

func (u *User) coversSet(ctx context.Context, perm string) (bool, error) {
	if slices.Contains(u.Scopes, perm) {
		return true, nil // a server that did not expand it granted it as such
	}
	p, err := auth.ParsePermissionString(perm)
	if err != nil {
		return false, nil
	}
	r, ok := u.resolver.(oauthclient.PermissionSetResolver)
	if !ok {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	set, err := r.ResolvePermissionSet(ctx, p.NSID, p.Audience)
	if err != nil {
		return false, err
	}
	for _, s := range set {
		if !covers(u.Scopes, s) {
			return false, nil
		}
	}
	return len(set) > 0, nil
}

// covers reports whether the granted scopes cover one granular permission.
func covers(granted []string, perm string) bool {
	if slices.Contains(granted, perm) {
		return true
	}
	want, err := auth.ParsePermissionString(perm)
	if err != nil {
		return false // atproto and transition: scopes match only exactly
	}
	var grants []*auth.Permission
	for _, g := range granted {
		if p, err := auth.ParsePermissionString(g); err == nil && p.Resource == want.Resource {
			grants = append(grants, p)
		}
	}
	generic := slices.Contains(granted, "transition:generic")
	switch want.Resource {
	case "repo":
		return generic || eachOf(want.Collection, func(coll string) bool {
			return eachOf(orAll(want.Action, "create", "update", "delete"), func(act string) bool {
				return slices.ContainsFunc(grants, func(g *auth.Permission) bool {
					return (slices.Contains(g.Collection, coll) || slices.Contains(g.Collection, "*")) &&
						(len(g.Action) == 0 || slices.Contains(g.Action, act))
				})
			})
		})
	case "rpc":
		return eachOf(want.Endpoint, func(lxm string) bool {
			if lxm != "*" && (generic && !strings.HasPrefix(lxm, "chat.bsky.") ||
				slices.Contains(granted, "transition:chat.bsky") && strings.HasPrefix(lxm, "chat.bsky.")) {
				return true
			}
			return slices.ContainsFunc(grants, func(g *auth.Permission) bool {
				return (slices.Contains(g.Endpoint, lxm) || slices.Contains(g.Endpoint, "*")) &&
					(g.Audience == "*" || g.Audience == want.Audience)
			})
		})
	case "blob":
		return generic || eachOf(want.Accept, func(mime string) bool {
			return slices.ContainsFunc(grants, func(g *auth.Permission) bool {
				return slices.ContainsFunc(g.Accept, func(pattern string) bool { return mimeCovers(pattern, mime) })
			})
		})
	case "account":
		act := firstOr(want.Action, "read")
		if want.Attribute == "email" && act == "read" && slices.Contains(granted, "transition:email") {
			return true
		}
		return slices.ContainsFunc(grants, func(g *auth.Permission) bool {
			have := firstOr(g.Action, "read")
			return g.Attribute == want.Attribute && (have == act || have == "manage")
		})
	case "identity":
		return slices.ContainsFunc(grants, func(g *auth.Permission) bool {
			return g.Attribute == "*" || g.Attribute == want.Attribute
		})
	}
	return false
}

func eachOf(items []string, ok func(string) bool) bool {
	for _, it := range items {
		if !ok(it) {
			return false
		}
	}
	return len(items) > 0
}

func orAll(actions []string, all ...string) []string {
	if len(actions) == 0 {
		return all
	}
	return actions
}

func firstOr(list []string, def string) string {
	if len(list) == 0 {
		return def
	}
	return list[0]
}

// mimeCovers reports whether a granted MIME pattern (*/*, image/*,
// image/png) covers a wanted type or pattern.
func mimeCovers(pattern, want string) bool {
	if pattern == "*/*" || pattern == want {
		return true
	}
	pt, ps, _ := strings.Cut(pattern, "/")
	wt, _, _ := strings.Cut(want, "/")
	return ps == "*" && pt == wt
}

// checkPermission panics on a permission string that can never be granted:
// RequireScopes takes permissions from the app's code, so a typo is a bug
// to report at startup, not at the first request.
func checkPermission(perm string) {
	if perm == "atproto" || strings.HasPrefix(perm, "transition:") {
		return
	}
	if _, err := auth.ParsePermissionString(perm); err != nil {
		panic(fmt.Sprintf("ginoauth: %q is not an AT Protocol permission: %v", perm, err))
	}
}

// RequireScopes lets through only requests whose session was granted every
// one of perms (see User.Allows for the syntax). It loads the session, and
// the OAuth session's current scopes (a refresh can change them), itself.
// A request without a login gets 401; one whose grant lacks a permission
// gets 403 with code insufficient_scope, the missing permissions, and the
// URL of the step-up route that asks for them and returns here:
//
//	{"error": "...", "code": "insufficient_scope",
//	 "missing": ["repo:com.example.note?action=create"],
//	 "upgrade": "/login/upgrade?redirect=%2Fnotes&scope=repo%3Acom.example.note%3Faction%3Dcreate"}
//
// perms come from the app's code; an invalid one panics here.
//
//	r.POST("/notes", ginoauth.RequireScopes(mgr, "repo:com.example.note?action=create"), createNote)
func RequireScopes(mgr *Manager, perms ...string) gin.HandlerFunc {
	for _, p := range perms {
		checkPermission(p)
	}
	return func(c *gin.Context) {
		u, err := mgr.ValidateSession(c)
		if err == nil {
			err = mgr.refreshScopes(c, u)
		}
		if err == nil {
			err = mgr.missing(c, u, perms)
		}
		if err != nil {
			mgr.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Next()
	}
}

// missing returns a *scopeError for the perms u's grant does not cover.
func (m *Manager) missing(c *gin.Context, u *User, perms []string) error {
	var lack []string
	for _, p := range perms {
		ok, err := u.allows(c.Request.Context(), p)
		if err != nil {
			return &OAuthFlowError{Code: CodeServerUnavailable, Message: "the app's permission set could not be looked up; please try again", Err: err}
		}
		if !ok {
			lack = append(lack, p)
		}
	}
	if len(lack) == 0 {
		return nil
	}
	q := url.Values{"scope": lack, "redirect": {safeReturnPath(c.Request.URL.RequestURI())}}
	return &scopeError{missing: lack, upgradeURL: m.cfg.Routes.Upgrade + "?" + q.Encode()}
}

// refreshScopes brings u.Scopes up to date from the OAuth session.
func (m *Manager) refreshScopes(c *gin.Context, u *User) error {
	if u.oauthSessionID == "" {
		return nil // authentication only: the login's scopes are all there is
	}
	_, err := m.OAuthSession(c) // updates u.Scopes
	return err
}

// StepUp starts a new login of the logged-in account that asks for perms on
// top of what its login asked for (prompt=consent, so the user sees the new
// permissions). When the user approves, the new login replaces the session
// on this device in one step (the old tokens are revoked and the session id
// changes) and the browser returns to returnTo. It returns the URL to send
// the browser to. perms come from the app's code.
//
// Errors: a *SessionError when nobody is logged in, an *OAuthFlowError
// (CodeInvalidScope for a permission the client does not declare), or a
// *storage.Error.
func (m *Manager) StepUp(c *gin.Context, perms []string, returnTo string) (string, error) {
	for _, p := range perms {
		if p == "" || len(p) > 512 {
			return "", &OAuthFlowError{Code: CodeInvalidScope, Message: "that permission is not valid"}
		}
		if _, err := auth.ParsePermissionString(p); err != nil && p != "atproto" && !strings.HasPrefix(p, "transition:") {
			return "", &OAuthFlowError{Code: CodeInvalidScope, Message: "that permission is not valid", Err: err}
		}
	}
	if m.cfg.AuthenticationOnly {
		return "", &OAuthFlowError{Code: CodeInvalidScope, Message: "this app signs in without permissions", Err: ErrAuthenticationOnly}
	}
	u, err := m.ValidateSession(c)
	if err != nil {
		return "", err
	}
	scopes := slices.Clone(u.requested)
	if len(scopes) == 0 {
		scopes = []string{"atproto"}
	}
	for _, p := range perms {
		if !slices.Contains(scopes, p) {
			scopes = append(scopes, p)
		}
	}
	return m.startFlowWith(c, u.DID, StartOptions{ReturnTo: returnTo, Scopes: scopes, Prompt: "consent"}, flowExtra{stepUpDID: u.DID})
}

// upgradeHandler is the prebuilt step-up route: one or more scope
// parameters and a redirect, from the query of a GET (a link from the
// app's own pages) or the form body of a POST.
func (m *Manager) upgradeHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.fromOtherSite(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		var form url.Values
		var ok bool
		if c.Request.Method == http.MethodPost {
			form, ok = m.postForm(c)
		} else {
			form, ok = m.query(c)
		}
		if !ok {
			return
		}
		if len(form["scope"]) == 0 {
			m.abortWithError(c, &OAuthFlowError{Code: CodeInvalidScope, Message: "name the permission to ask for in scope"})
			return
		}
		authURL, err := m.StepUp(c, form["scope"], form.Get("redirect"))
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, authURL)
	}
}
