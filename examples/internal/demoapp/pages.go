package demoapp

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"when": when,
	"initial": func(handle string) string {
		for _, r := range handle {
			return strings.ToUpper(string(r))
		}
		return "?"
	},
}).ParseFS(webFS, "web/*.html"))

// NoteCollection is the collection of the records the "Save a note" button
// writes. com.example is the namespace set aside for examples.
const NoteCollection = "com.example.ginoauth.note"

// maxNoteRunes bounds a note's text (Bluesky posts allow 300 graphemes).
const maxNoteRunes = 300

// maxFormBytes bounds the app's own form posts.
const maxFormBytes = 16 << 10

// PageOptions describe the app instance to its pages.
type PageOptions struct {
	// BaseURL is the app's public origin; form posts must come from it.
	BaseURL string
	// Network is where logins go; the start page explains the offline mode.
	Network *Network
	// Instance, if set, names this app instance on every page (the Postgres
	// example runs several).
	Instance string
	// Logger receives the app's logs. Default: discard.
	Logger *slog.Logger
}

// Pages is the example app: its pages, its form handlers and the
// middleware they rely on. Build it with NewPages once the Manager exists.
type Pages struct {
	mgr  *ginoauth.Manager
	opts PageOptions
	log  *slog.Logger
}

// NewPages returns the example app for mgr.
func NewPages(mgr *ginoauth.Manager, opts PageOptions) *Pages {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pages{mgr: mgr, opts: opts, log: opts.Logger}
}

// Middleware returns what goes in front of every route, before
// ginoauth.Middleware, in order: panic recovery, a request log, security
// headers, and a redirect to the canonical host in loopback development.
// The library's own failures become HTML pages through ErrorPages.
func (a *Pages) Middleware() []gin.HandlerFunc {
	return []gin.HandlerFunc{
		recovery(a.log),
		requestLog(a.log),
		securityHeaders(),
		canonicalHost(a.opts.BaseURL),
	}
}

// Mount registers the example app's own routes on r:
//
//	GET  /                     the start page, or the account page when logged in
//	POST /pds/session          calls com.atproto.server.getSession on the user's PDS
//	POST /pds/note             writes a record with com.atproto.repo.createRecord
//	POST /devices/end          ends another session of the account (mgr.EndSession)
//	POST /devices/end-others   ends every other session of the account
//	POST /devices/end-all      logs out everywhere (mgr.Logout, mgr.EndAllSessions)
//	POST /logout               logs out of every account of the browser (mgr.Logout)
//	                           and goes back to the start page
//	GET  /static/style.css     the stylesheet
//	GET  /healthz              200 "ok", for load balancers and scripts
//
// The account switcher on the account page uses the library's routes:
// POST /login with add=1, POST /api/accounts/switch and
// POST /api/accounts/logout.
//
// The forms answer 303 See Other back to a page, with their result in a
// flash (Post/Redirect/Get), so a reload or a new tab repeats the GET,
// never the post: a note is never saved twice. The login itself
// is the library's: the start page's form posts to the prebuilt /login, and
// the authorization server sends the browser back to the prebuilt
// /oauth/callback (mgr.Mount).
func (a *Pages) Mount(r gin.IRouter) {
	r.GET("/", a.flashes(), a.home)
	r.HEAD("/", a.flashes(), a.home)
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	css, _ := fs.Sub(webFS, "web")
	r.GET("/static/style.css", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		c.FileFromFS("style.css", http.FS(css))
	})
	if e, ok := r.(*gin.Engine); ok {
		e.NoRoute(func(c *gin.Context) { renderError(c, http.StatusNotFound, "There is no page at this address.") })
	}
	post := r.Group("/", sameOrigin(a.opts.BaseURL), limitBody, a.flashes())
	post.POST("/logout", a.logout)
	post.POST("/pds/session", a.pdsSession)
	post.POST("/pds/note", a.pdsNote)
	post.POST("/devices/end", a.endDevice)
	post.POST("/devices/end-others", a.endOtherDevices)
	post.POST("/devices/end-all", a.endAllDevices)
}

// pageData is what the templates see.
type pageData struct {
	Title    string
	Instance string
	Status   int

	// Start page.
	Handle string // what the user typed, to show it again after an error
	Local  bool
	Demo   any
	PDSURL string
	Error  string

	// Both: a one-line notice from the previous form post (flash).
	Notice string

	// Account page.
	User    *ginoauth.User
	Result  *pdsResult
	Devices *deviceList // nil: the Storage keeps no per-account index
	// Accounts are the browser's accounts (mgr.Accounts), the active one
	// first: the account switcher.
	Accounts []ginoauth.Account
}

// pdsResult is what an authenticated PDS call returned, for the page. It
// travels in the flash cookie, so it stays small.
type pdsResult struct {
	Title   string          `json:"title"`
	Summary string          `json:"summary,omitempty"`
	Note    string          `json:"note,omitempty"`   // the text of a saved note
	URI     string          `json:"uri,omitempty"`    // the at:// address of a saved record
	Answer  json.RawMessage `json:"answer,omitempty"` // the PDS's JSON answer, compact
	Failed  bool            `json:"failed,omitempty"`
}

// Pretty is the PDS's answer, indented for the page.
func (r *pdsResult) Pretty() string {
	if len(r.Answer) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if json.Indent(&buf, r.Answer, "", "  ") != nil {
		return ""
	}
	return buf.String()
}

func limitBody(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxFormBytes)
	c.Next()
}

// home is the start page for visitors and the account page for logged-in
// users. The user comes from ginoauth.Middleware, which ran before.
// A flash from the form post before shows here once.
func (a *Pages) home(c *gin.Context) {
	var f flash
	if c.Request.Method == http.MethodGet {
		f, _ = a.takeFlash(c)
	}
	if user, ok := ginoauth.CurrentUser(c); ok {
		if f.DID != user.DID {
			f = flash{} // another account's result (a logout and login since)
		}
		a.renderAccount(c, http.StatusOK, user, f)
		return
	}
	d := startData(a.opts, "", "")
	switch {
	case f.DID == "":
		d.Notice = f.Notice // "You are logged out."
	case f.Result != nil && f.Result.Failed:
		// The PDS call ended the login (its refresh was refused), so the
		// page after the redirect is the start page.
		d.Error = loginGone
	}
	render(c, http.StatusOK, "start.html", d)
}

func (a *Pages) logout(c *gin.Context) {
	if err := a.mgr.Logout(c); err != nil {
		a.fail(c, err)
		return
	}
	a.redirectWithFlash(c, "/", flash{Notice: "You are logged out. The session on this device has ended and its tokens were revoked."})
}

// pdsSession makes an authenticated call to the user's PDS through the
// OAuth session: DPoP-bound tokens, refreshed by the OAuth client when they
// expire. None of that reaches the browser; it only sees the answer.
func (a *Pages) pdsSession(c *gin.Context) {
	user, sess, ok := a.oauthSession(c)
	if !ok {
		return
	}
	var out map[string]any
	err := indigoclient.APIClient(sess).Get(c.Request.Context(), "com.atproto.server.getSession", nil, &out)
	res := a.pdsOutcome(c, "com.atproto.server.getSession", err, out)
	if err == nil {
		res.Summary = "Your PDS confirms this login belongs to " + str(out["handle"]) + " (" + str(out["did"]) + ")."
	}
	a.showResult(c, user, res)
}

// showResult ends a PDS form post with a redirect back to the account
// page, which shows res once (Post/Redirect/Get).
func (a *Pages) showResult(c *gin.Context, user *ginoauth.User, res *pdsResult) {
	a.redirectWithFlash(c, "/#pds", flash{DID: user.DID, Result: res})
}

// pdsNote writes a small record to the user's repository.
func (a *Pages) pdsNote(c *gin.Context) {
	user, sess, ok := a.oauthSession(c)
	if !ok {
		return
	}
	text := strings.TrimSpace(c.PostForm("text"))
	notSaved := func(why string) {
		a.showResult(c, user, &pdsResult{Title: "Note not saved", Summary: why, Failed: true})
	}
	switch n := utf8.RuneCountInString(text); {
	case !utf8.ValidString(text):
		notSaved("The note is not valid text.")
		return
	case n == 0:
		notSaved("Write something first.")
		return
	case n > maxNoteRunes:
		notSaved("A note can be at most 300 characters.")
		return
	}
	in := map[string]any{
		"repo":       sess.DID(),
		"collection": NoteCollection,
		"record": map[string]any{
			"$type":     NoteCollection,
			"text":      text,
			"createdAt": time.Now().UTC().Format(time.RFC3339),
		},
	}
	var out map[string]any
	err := indigoclient.APIClient(sess).Post(c.Request.Context(), "com.atproto.repo.createRecord", in, &out)
	res := a.pdsOutcome(c, "com.atproto.repo.createRecord", err, out)
	if err == nil {
		res.Title = "Note saved"
		res.Summary = "Your PDS wrote this note to your repository (com.atproto.repo.createRecord)."
		res.Note = text
		res.URI = str(out["uri"])
	}
	a.showResult(c, user, res)
}

// loginGone tells the user that their account's server ended the login.
const loginGone = "Your account's server no longer accepts this login (it was revoked or has expired). Please log in again."

// oauthSession returns the logged-in user and their ready OAuth session, or
// answers the request itself (not logged in, login ended, storage down).
func (a *Pages) oauthSession(c *gin.Context) (*ginoauth.User, oauthclient.Session, bool) {
	user, ok := ginoauth.CurrentUser(c)
	if !ok {
		a.renderStartPage(c, http.StatusUnauthorized, "", "Your login has ended. Please log in again.")
		return nil, nil, false
	}
	sess, err := a.mgr.OAuthSession(c)
	var se *ginoauth.SessionError
	switch {
	case errors.As(err, &se):
		// The OAuth session is gone (revoked or expired); the library has
		// already ended the local session too.
		a.renderStartPage(c, http.StatusUnauthorized, "", loginGone)
		return nil, nil, false
	case err != nil:
		a.fail(c, err)
		return nil, nil, false
	}
	return user, sess, true
}

// pdsOutcome describes the result of a PDS call for the page; the caller
// adds a summary on success.
func (a *Pages) pdsOutcome(c *gin.Context, nsid string, err error, out map[string]any) *pdsResult {
	if err == nil {
		answer, _ := json.Marshal(out)
		return &pdsResult{Title: "Your PDS answered " + nsid, Answer: answer}
	}
	res := &pdsResult{Title: nsid + " failed", Failed: true}
	var xe *atclient.APIError
	if errors.As(err, &xe) {
		a.log.Warn("PDS call refused", "nsid", nsid, "status", xe.StatusCode, "error", xe.Name)
		res.Summary = "Your PDS refused the call (HTTP " + strconv.Itoa(xe.StatusCode) + ")"
		if xe.Name != "" {
			res.Summary += ": " + xe.Name
		}
		if xe.Message != "" {
			res.Summary += ": " + xe.Message
		}
		res.Summary += "."
		if xe.StatusCode == http.StatusUnauthorized {
			res.Summary += " The login may have been revoked; log out and log in again."
		}
		return res
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		res.Summary = "The call to your PDS took too long. Please try again."
		return res
	}
	// Refresh failures and network errors end up here. Their text may
	// contain server responses, so it is logged, not shown.
	a.log.Warn("PDS call failed", "nsid", nsid, "err", err)
	res.Summary = "Your PDS could not be reached, or it no longer accepts this login (it may have been revoked or expired). Try again, or log out and log in again."
	return res
}

// fail answers an error from the library as a page, with the status, code
// and safe message the library's own handlers would use.
func (a *Pages) fail(c *gin.Context, err error) {
	r := ginoauth.ErrorResponseFor(err)
	a.log.Error("request failed", "route", c.FullPath(), "status", r.Status, "code", r.Code, "err", err)
	if r.Status == http.StatusServiceUnavailable {
		c.Header("Retry-After", "5")
	}
	if r.Code == ginoauth.CodeInternal {
		r.Message = "Something went wrong on our side. Please try again."
	}
	renderError(c, r.Status, friendlyMessage(r.Status, r.Code, r.Message))
}

func (a *Pages) renderStartPage(c *gin.Context, status int, handle, msg string) {
	render(c, status, "start.html", startData(a.opts, handle, msg))
}

func startData(opts PageOptions, handle, msg string) pageData {
	d := pageData{Title: "Log in", Instance: opts.Instance, Handle: handle, Error: msg}
	if n := opts.Network; n != nil && n.IsLocal() {
		d.Local = true
		d.Demo = DemoAccount
		d.PDSURL = n.Local().URL()
	}
	return d
}

func (a *Pages) renderAccount(c *gin.Context, status int, user *ginoauth.User, f flash) {
	d := pageData{Title: "Your account", Instance: a.opts.Instance, User: user, Notice: f.Notice, Result: f.Result}
	if n := a.opts.Network; n != nil && n.IsLocal() {
		d.Local = true
		d.PDSURL = n.Local().URL()
	}
	d.Devices = a.devices(c, user)
	accounts, err := a.mgr.Accounts(c)
	if err != nil {
		a.log.Warn("could not list the browser's accounts", "err", err)
		accounts = []ginoauth.Account{{DID: user.DID, Handle: user.Handle, Active: true}}
	}
	d.Accounts = accounts
	c.Header("Cache-Control", "no-store")
	render(c, status, "account.html", d)
}

func renderError(c *gin.Context, status int, msg string) {
	title := http.StatusText(status)
	if status == http.StatusServiceUnavailable {
		title = "Temporarily unavailable"
	}
	render(c, status, "error.html", pageData{Title: title, Status: status, Error: msg})
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func render(c *gin.Context, status int, name string, d pageData) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		c.Header("Content-Type", "text/plain; charset=utf-8")
		c.String(http.StatusInternalServerError, "template error")
		return
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	_, _ = c.Writer.Write(buf.Bytes())
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
