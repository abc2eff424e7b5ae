package ginoauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file is several accounts in one browser. The session cookie holds
// the active account's session id (sid, with its last activity a) and, in
// o, up to Config.MaxAccounts-1 other accounts' session ids, each with its
// own last activity and how long its cookie should last:
//
//	o = sid.activity.until[,sid.activity.until]...   (Unix seconds)
//
// most recently active first. Each account is a device session of its own
// (its own record, tokens, lifetime, idle timeout and scopes); the session
// check reads only the active one. The others are read when they are
// listed, switched to, or signed out, at most MaxAccounts reads, and only
// after the cookie passed the shape check (checkOthers): no more entries
// than the limit and no session id twice.
//
// A login either replaces every account of the browser (a plain login:
// they are ended) or, asked for with StartOptions.AddAccount, adds one. An
// added login keeps only the accounts the cookie held when the user asked
// to add one (recorded in the flow record, which only this browser's flow
// cookie opens) and that are still live when it completes; the cookie is
// sealed afresh. So an account planted into the browser while the user was
// at the authorization server never survives the user's login.

// maxAccountsCap bounds Config.MaxAccounts: the cookie must stay well
// under a browser's 4 KiB (each account is some 60 bytes, sealed).
const maxAccountsCap = 20

// Account is one of the accounts logged in in this browser, as
// Manager.Accounts and the session route list them.
type Account struct {
	DID    string `json:"did"`
	Handle string `json:"handle"`
	Active bool   `json:"active"` // the account CurrentUser is
	// Name and Avatar are the app's, from Config.DescribeAccounts (the
	// library fetches no profiles); empty otherwise.
	Name   string `json:"name,omitempty"`
	Avatar string `json:"avatar,omitempty"`
}

// browserEntry is one account of the cookie.
type browserEntry struct {
	sid      string
	activity int64  // last activity, Unix seconds
	until    int64  // how long its cookie should last, Unix seconds
	hash     string // set instead of sid for a session known by its hash only
}

func (e browserEntry) String() string {
	return e.sid + "." + strconv.FormatInt(e.activity, 10) + "." + strconv.FormatInt(e.until, 10)
}

// joinEntries lays out o.
func joinEntries(entries []browserEntry) string {
	parts := make([]string, len(entries))
	for i, e := range entries {
		parts[i] = e.String()
	}
	return strings.Join(parts, ",")
}

// checkOthers is the session check's look at o, without allocating: it
// reports whether o names at most limit-1 accounts, each a well-formed
// entry, none of them active (the active session id) and none twice, and
// returns the latest until among them.
func checkOthers(o, active string, limit int) (maxUntil int64, ok bool) {
	var seen [maxAccountsCap]string
	n := 0
	for {
		part, rest, more := strings.Cut(o, ",")
		if n >= limit-1 || n >= len(seen) {
			return 0, false
		}
		e, good := parseEntry(part)
		if !good || e.sid == active || slices.Contains(seen[:n], e.sid) {
			return 0, false
		}
		seen[n] = e.sid
		n++
		maxUntil = max(maxUntil, e.until)
		if !more {
			return maxUntil, true
		}
		o = rest
	}
}

// parseEntry reads one sid.activity.until.
func parseEntry(s string) (browserEntry, bool) {
	if len(s) < sessionIDLen+4 || s[sessionIDLen] != '.' {
		return browserEntry{}, false
	}
	act, until, ok := strings.Cut(s[sessionIDLen+1:], ".")
	a, ok1 := parseUnix(act)
	u, ok2 := parseUnix(until)
	if !ok || !ok1 || !ok2 {
		return browserEntry{}, false
	}
	return browserEntry{sid: s[:sessionIDLen], activity: a, until: u}, true
}

// parseUnix reads a non-negative number of seconds of at most 12 digits,
// without leading zeros (strconv is slower, and signs, spaces or leading
// zeros are never sealed).
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 12 || (len(s) > 1 && s[0] == '0') { // one spelling per value
		return 0, false
	}
	var v int64
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseOthers is o as entries; o passed checkOthers.
func parseOthers(o string) []browserEntry {
	if o == "" {
		return nil
	}
	var out []browserEntry
	for part := range strings.SplitSeq(o, ",") {
		if e, ok := parseEntry(part); ok {
			out = append(out, e)
		}
	}
	return out
}

// requestAccounts reads the request's session cookie as entries, the
// active one first, whether or not its sessions are live; nil when there is
// no cookie, or one that does not open or fails the shape check.
func (m *Manager) requestAccounts(r *http.Request) []browserEntry {
	sid, act, o, _, _, err := m.cookies.stringValues(r, m.cfg.CookieName, cookieSessionID, cookieActive, cookieOthers)
	if err != nil || len(sid) != sessionIDLen {
		return nil
	}
	if o != "" {
		if _, ok := checkOthers(o, sid, m.cfg.MaxAccounts); !ok {
			return nil
		}
	}
	a, _ := strconv.ParseInt(act, 10, 64)
	return append([]browserEntry{{sid: sid, activity: a}}, parseOthers(o)...)
}

// setAccountsCookie seals entries (the first active) into the session
// cookie, or clears it when there are none. The cookie lasts as long as
// the longest-lived of them.
func (m *Manager) setAccountsCookie(c *gin.Context, entries []browserEntry) error {
	if len(entries) == 0 {
		m.clearSessionCookie(c.Writer, c.Request)
		return nil
	}
	until := entries[0].until
	for _, e := range entries[1:] {
		until = max(until, e.until)
	}
	c.Header("Cache-Control", "no-store")
	return m.setSessionCookie(c.Writer, entries[0].sid, time.Unix(entries[0].activity, 0), time.Unix(until, 0), joinEntries(entries[1:]))
}

// cookieUntilFor is until for the user's own cookie, with its other
// accounts (othersUntil: the latest of theirs).
func cookieUntilFor(u *User) time.Time {
	if u.othersUntil > u.cookieUntil.Unix() {
		return time.Unix(u.othersUntil, 0)
	}
	return u.cookieUntil
}

// dropActive takes the request's active account out of its cookie without
// ending it (it has ended, or is being ended): the next account, if any,
// becomes active. It reads no storage: the next request checks the new
// active account as usual.
func (m *Manager) dropActive(c *gin.Context) error {
	entries := m.requestAccounts(c.Request)
	if len(entries) <= 1 {
		m.clearSessionCookie(c.Writer, c.Request)
		return nil
	}
	return m.setAccountsCookie(c, entries[1:])
}

// otherAccount is one of the browser's other accounts, as storage has it.
type otherAccount struct {
	entry browserEntry
	hash  string
	rec   sessionRecord
}

// readOthers reads the records of the browser's other accounts (at most
// MaxAccounts-1 reads, one each), with the request's active user u.
// Entries that no longer name a live browser session of an account of
// their own (ended from another device, expired, idle, a native app's, or
// a second entry of an account) are left out, and gone reports whether
// any was: the caller reseals the cookie without them. An expired or idle
// one is ended, with its reason.
func (m *Manager) readOthers(ctx context.Context, u *User) (live []otherAccount, gone bool, err error) {
	dids := []string{u.DID}
	now := m.now()
	for _, e := range parseOthers(u.others) {
		hash := hashSessionID(e.sid)
		var rec sessionRecord
		switch gerr := m.sessions.get(ctx, hash, &rec); {
		case errors.Is(gerr, storage.ErrNotFound):
			gone = true
			continue
		case gerr != nil:
			return nil, false, gerr
		}
		switch {
		case rec.kind() != kindWeb || rec.Browser != u.browser || slices.Contains(dids, rec.DID):
			// Not this browser's (someone else's session), or a second
			// entry of one account: never listed nor switched to.
			gone = true
			continue
		case !now.Before(rec.ExpiresAt):
			gone = true
			if _, _, err := m.sessions.endExpired(ctx, hash, rec); err != nil {
				return nil, false, err
			}
			continue
		case m.cfg.IdleTimeout > 0 && now.Sub(time.Unix(e.activity, 0)) >= m.cfg.IdleTimeout:
			gone = true
			if err := m.sessions.end(ctx, hash, &rec, EndIdle); err != nil {
				return nil, false, err
			}
			continue
		}
		dids = append(dids, rec.DID)
		live = append(live, otherAccount{entry: e, hash: hash, rec: rec})
	}
	return live, gone, nil
}

// activeEntry is the request's active account as a cookie entry, used now.
func (m *Manager) activeEntry(u *User) browserEntry {
	return browserEntry{sid: u.sid, activity: m.now().Unix(), until: u.cookieUntil.Unix()}
}

// Accounts lists the accounts logged in in this browser, the active one
// (CurrentUser) first, then the others, most recently used first, with
// Config.DescribeAccounts' names and pictures. An anonymous request has
// none. It reads storage once for each account but the active one (whose
// session the request already loaded), and drops from the browser the
// accounts whose sessions ended elsewhere. Errors: a *storage.Error.
func (m *Manager) Accounts(c *gin.Context) ([]Account, error) {
	u, err := m.loadUser(c)
	if err != nil || u == nil || u.kind != kindWeb {
		if err == nil && u != nil {
			return []Account{{DID: u.DID, Handle: u.Handle, Active: true}}, nil // a native app: one account
		}
		return nil, err
	}
	out := []Account{{DID: u.DID, Handle: u.Handle, Active: true}}
	if u.others != "" {
		live, gone, err := m.readOthers(c.Request.Context(), u)
		if err != nil {
			return nil, err
		}
		entries := []browserEntry{m.activeEntryAsIs(c, u)}
		for _, o := range live {
			out = append(out, Account{DID: o.rec.DID, Handle: o.rec.Handle})
			entries = append(entries, o.entry)
		}
		if gone {
			if err := m.setAccountsCookie(c, entries); err != nil {
				return nil, err
			}
			u.others, u.othersUntil = joinEntries(entries[1:]), 0
		}
	}
	if m.cfg.DescribeAccounts != nil {
		m.cfg.DescribeAccounts(c.Request.Context(), out)
	}
	return out, nil
}

// activeEntryAsIs is the active account's entry as the cookie has it (its
// sealed last activity), for a reseal that is not a use of it.
func (m *Manager) activeEntryAsIs(c *gin.Context, u *User) browserEntry {
	e := m.activeEntry(u)
	if entries := m.requestAccounts(c.Request); len(entries) > 0 && entries[0].sid == u.sid {
		e.activity = entries[0].activity
	}
	return e
}

// switchAccount makes the browser's account did active, reading at most
// MaxAccounts records; the request's user becomes that account. A *SessionError
// (CodeNotLoggedIn: no logged-in account; codeNoSuchSession: no live
// account did in this browser) or a *storage.Error.
func (m *Manager) switchAccount(c *gin.Context, did string) (*User, error) {
	u, err := m.ValidateSession(c)
	if err != nil {
		return nil, err
	}
	if u.DID == did {
		return u, nil
	}
	ctx := c.Request.Context()
	live, gone, err := m.readOthers(ctx, u)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(live, func(o otherAccount) bool { return o.rec.DID == did })
	if i < 0 {
		if gone {
			entries := []browserEntry{m.activeEntryAsIs(c, u)}
			for _, o := range live {
				entries = append(entries, o.entry)
			}
			if err := m.setAccountsCookie(c, entries); err != nil {
				return nil, err
			}
		}
		return nil, &SessionError{Code: codeNoSuchSession}
	}
	// The real session check for the target: kind, lifetime, extension.
	next, code, err := m.sessions.read(ctx, live[i].entry.sid, kindWeb)
	if err != nil {
		return nil, err
	}
	entries := []browserEntry{{}, m.activeEntry(u)}
	for j, o := range live {
		if j != i {
			entries = append(entries, o.entry)
		}
	}
	if next == nil {
		if err := m.setAccountsCookie(c, entries[1:]); err != nil {
			return nil, err
		}
		return nil, &SessionError{Code: code}
	}
	next.sid = live[i].entry.sid
	entries[0] = browserEntry{sid: next.sid, activity: m.now().Unix(), until: next.cookieUntil.Unix()}
	if err := m.setAccountsCookie(c, entries); err != nil {
		return nil, err
	}
	next.others = joinEntries(entries[1:])
	setState(c, next, "")
	m.log.Info("account switched", "did", next.DID, "session", shortRef(next.sessionHash))
	return next, nil
}

// logoutActive ends the active account's session only; the browser's next
// live account becomes active (nil when none is left).
func (m *Manager) logoutActive(c *gin.Context) (*User, error) {
	u, err := m.loadUser(c)
	if err != nil {
		return nil, err
	}
	if u != nil && u.kind != kindWeb {
		// A native app's token: it is its one account; no cookie is touched.
		if err := m.sessions.end(c.Request.Context(), u.sessionHash, u.record(), EndLogout); err != nil {
			return nil, err
		}
		setState(c, nil, CodeNotLoggedIn)
		return nil, nil
	}
	entries := m.requestAccounts(c.Request)
	if u != nil {
		ctx := c.Request.Context()
		if err := m.sessions.end(ctx, u.sessionHash, u.record(), EndLogout); err != nil {
			return nil, err
		}
		m.log.Info("logged out of one account", "did", u.DID, "session", shortRef(u.sessionHash))
		if len(entries) > 0 && entries[0].sid == u.sid {
			entries = entries[1:]
		}
	} else if len(entries) > 0 {
		entries = entries[1:] // the active one is already gone
	}
	// The next live one becomes active (the real check: one read each).
	for len(entries) > 0 {
		next, _, err := m.sessions.read(c.Request.Context(), entries[0].sid, kindWeb)
		if err != nil {
			return nil, err
		}
		if next == nil {
			entries = entries[1:]
			continue
		}
		next.sid = entries[0].sid
		entries[0] = browserEntry{sid: next.sid, activity: m.now().Unix(), until: next.cookieUntil.Unix()}
		if err := m.setAccountsCookie(c, entries); err != nil {
			return nil, err
		}
		next.others = joinEntries(entries[1:])
		setState(c, next, "")
		return next, nil
	}
	m.clearSessionCookie(c.Writer, c.Request)
	setState(c, nil, CodeNotLoggedIn)
	return nil, nil
}

// endBrowserAccounts ends every session the request's cookie names but
// the active user's (which the caller ends), for a logout of the whole
// browser and a login that replaces them: at most MaxAccounts-1 reads.
// Sessions that are gone, or not a browser's, are skipped.
func (m *Manager) endBrowserAccounts(ctx context.Context, entries []browserEntry, skip string, reason EndReason) error {
	for _, e := range entries {
		if e.sid == skip {
			continue
		}
		hash := hashSessionID(e.sid)
		var rec sessionRecord
		switch err := m.sessions.get(ctx, hash, &rec); {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return err
		}
		if rec.kind() != kindWeb {
			continue
		}
		if err := m.sessions.end(ctx, hash, &rec, reason); err != nil {
			return err
		}
	}
	return nil
}

// The prebuilt account routes.

// switchAccountHandler answers POST {"did"} (JSON or a form): 200
// {"success":true,"did","handle"}, 303 to the form's redirect for an HTML
// form, 404 no_such_session when the browser holds no live session of did.
func (m *Manager) switchAccountHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.crossOrigin(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		var did, redirect string
		if isJSON(c.Request) {
			if err := readJSONObject(c, map[string]*string{"did": &did}); err != nil {
				m.abortWithError(c, err)
				return
			}
		} else {
			form, ok := m.postForm(c)
			if !ok {
				return
			}
			did, redirect = form.Get("did"), form.Get("redirect")
		}
		if did == "" || len(did) > 2048 {
			m.abortWithError(c, badRequest("give the did of the account to switch to"))
			return
		}
		u, err := m.switchAccount(c, did)
		if err != nil {
			var se *SessionError
			if errors.As(err, &se) && se.Code == codeNoSuchSession {
				c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "this browser has no session of that account", "code": codeNoSuchSession})
				return
			}
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		if wantsHTML(c) {
			c.Redirect(http.StatusSeeOther, safeReturnPath(redirect))
			return
		}
		c.JSON(http.StatusOK, gin.H{"success": true, "did": u.DID, "handle": u.Handle})
	}
}

// logoutAccountHandler ends the active account only and answers 200
// {"success":true,"active":{"did","handle"}} with the account now active
// ("active": null when none is left); an HTML form gets 303 to its
// redirect.
func (m *Manager) logoutAccountHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.crossOrigin(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		form, ok := m.postForm(c)
		if !ok {
			return
		}
		next, err := m.logoutActive(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		if wantsHTML(c) {
			c.Redirect(http.StatusSeeOther, safeReturnPath(form.Get("redirect")))
			return
		}
		var active any
		if next != nil {
			active = gin.H{"did": next.DID, "handle": next.Handle}
		}
		c.JSON(http.StatusOK, gin.H{"success": true, "active": active})
	}
}
