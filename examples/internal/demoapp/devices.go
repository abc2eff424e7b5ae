package demoapp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// This file is the account page's "Your devices" section: every device
// session of the account (browsers and native apps), from
// Manager.SessionsOf, and the forms that end one, the others or all of them
// (Manager.EndSession, Manager.EndAllSessions). Each form posts to the app
// (same-origin only, like its other forms) and redirects back.

// deviceList is the devices section of the account page.
type deviceList struct {
	Sessions []device
	Others   int    // how many are not this device
	Error    string // the list could not be read (storage trouble)
}

// device is one session, as the page shows it.
type device struct {
	ginoauth.SessionInfo
	KindLabel string // "Browser" or "Native app"
	SeenLabel string // "now", "in the last hour", "about 5 hours ago", ...
}

// devices lists the user's sessions for the account page. It returns nil
// when the Storage keeps no per-account index (ginoauth.ErrNoIndex): then
// the page has no devices section.
func (a *Pages) devices(c *gin.Context, user *ginoauth.User) *deviceList {
	list, err := a.mgr.SessionsOf(c.Request.Context(), user.DID, user)
	switch {
	case errors.Is(err, ginoauth.ErrNoIndex):
		return nil
	case err != nil:
		a.log.Warn("listing the account's sessions failed", "err", err)
		return &deviceList{Error: "Your devices could not be listed right now. Reload the page to try again."}
	}
	d := &deviceList{}
	now := time.Now()
	// This device first, then the others newest first (as SessionsOf
	// lists them).
	slices.SortStableFunc(list, func(x, y ginoauth.SessionInfo) int {
		switch {
		case x.Current == y.Current:
			return 0
		case x.Current:
			return -1
		}
		return 1
	})
	for _, s := range list {
		dev := device{SessionInfo: s, KindLabel: "Browser", SeenLabel: seenLabel(now, s.LastSeen)}
		if s.Kind == "mobile" {
			dev.KindLabel = "Native app"
		}
		if s.Current {
			dev.SeenLabel = "now"
		} else {
			d.Others++
		}
		d.Sessions = append(d.Sessions, dev)
	}
	return d
}

// seenLabel describes a last-seen time, which the library keeps to the hour.
func seenLabel(now, t time.Time) string {
	switch d := now.Sub(t); {
	case d < time.Hour:
		return "in the last hour"
	case d < 48*time.Hour:
		return fmt.Sprintf("about %d hours ago", int(d.Hours()))
	default:
		return "on " + t.UTC().Format("2 Jan 2006")
	}
}

// endDevice ends one other session of the user's account, named by the
// form's ref (SessionInfo.Ref: an opaque reference, not the session id).
// Ending this device's own session is a logout.
func (a *Pages) endDevice(c *gin.Context) {
	user, ok := a.loggedIn(c)
	if !ok {
		return
	}
	ref := c.PostForm("ref")
	if ref == "" || len(ref) > 64 {
		renderError(c, http.StatusBadRequest, "Choose the session to end.")
		return
	}
	ctx := c.Request.Context()
	list, err := a.mgr.SessionsOf(ctx, user.DID, user)
	if err != nil {
		a.fail(c, err)
		return
	}
	var target *ginoauth.SessionInfo
	for i := range list {
		if list[i].Ref == ref {
			target = &list[i]
		}
	}
	switch {
	case target == nil:
		// Ended meanwhile (in another tab, or it expired).
		a.redirectWithFlash(c, "/#devices", flash{DID: user.DID, Notice: "That session had already ended."})
		return
	case target.Current:
		a.logout(c)
		return
	}
	found, err := a.mgr.EndSession(ctx, user.DID, ref)
	if err != nil {
		a.fail(c, err)
		return
	}
	notice := "Ended the session of " + target.Device + " (logged in " + when(target.CreatedAt) + "). That device is logged out."
	if !found {
		notice = "That session had already ended."
	}
	a.redirectWithFlash(c, "/#devices", flash{DID: user.DID, Notice: notice})
}

// endOtherDevices ends every session of the account but this one.
func (a *Pages) endOtherDevices(c *gin.Context) {
	user, ok := a.loggedIn(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	list, err := a.mgr.SessionsOf(ctx, user.DID, user)
	if err != nil {
		a.fail(c, err)
		return
	}
	ended := 0
	for _, s := range list {
		if s.Current {
			continue
		}
		found, err := a.mgr.EndSession(ctx, user.DID, s.Ref)
		if err != nil {
			a.fail(c, err)
			return
		}
		if found {
			ended++
		}
	}
	notice := "No other device was logged in."
	switch {
	case ended == 1:
		notice = "Logged out 1 other device. Only this one is still logged in."
	case ended > 1:
		notice = fmt.Sprintf("Logged out %d other devices. Only this one is still logged in.", ended)
	}
	a.redirectWithFlash(c, "/#devices", flash{DID: user.DID, Notice: notice})
}

// endAllDevices logs out everywhere: this device first (Logout, which also
// clears its cookie), then every other session of the account
// (EndAllSessions), each with its tokens revoked.
func (a *Pages) endAllDevices(c *gin.Context) {
	user, ok := a.loggedIn(c)
	if !ok {
		return
	}
	if err := a.mgr.Logout(c); err != nil {
		a.fail(c, err)
		return
	}
	others, err := a.mgr.EndAllSessions(c.Request.Context(), user.DID)
	if err != nil {
		a.fail(c, err)
		return
	}
	notice := "You are logged out on this device. No other device was logged in."
	switch {
	case others == 1:
		notice = "You are logged out everywhere: on this device and on 1 other."
	case others > 1:
		notice = fmt.Sprintf("You are logged out everywhere: on this device and on %d others.", others)
	}
	a.redirectWithFlash(c, "/", flash{Notice: notice})
}

// loggedIn returns the request's user, or answers with the start page.
func (a *Pages) loggedIn(c *gin.Context) (*ginoauth.User, bool) {
	user, ok := ginoauth.CurrentUser(c)
	if !ok {
		a.renderStartPage(c, http.StatusUnauthorized, "", "Your login has ended. Please log in again.")
		return nil, false
	}
	return user, true
}

// when formats a time for the pages.
func when(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }
