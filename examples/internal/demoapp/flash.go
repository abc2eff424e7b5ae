package demoapp

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"
	gsessions "github.com/gorilla/sessions"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
)

// The app's form posts answer with a redirect (Post/Redirect/Get): the
// result travels to the next page in a flash, a short-lived cookie sealed by
// the library's CookieStore, which is a complete gin-contrib/sessions store.
// A reload then repeats the GET, not the post (no second note), and the
// address bar never holds a page that only a post could produce.

// flashCookie is the flash's cookie; the Manager's are sid and sid_flow.
const flashCookie = "flash"

// flashTTL bounds a flash that is never shown (the redirect was not
// followed): the cookie's Max-Age and its sealed expiry.
const flashTTL = 5 * time.Minute

// maxFlashAnswer bounds the PDS answer a flash carries, so that the sealed
// cookie stays well under the browsers' 4 KiB; a longer one is not shown.
const maxFlashAnswer = 1500

// flash is what one form post hands to the page after its redirect.
type flash struct {
	// DID is the account a result belongs to: a result is shown only to
	// that account (another login in the same browser never sees it).
	DID    string     `json:"did,omitempty"`
	Notice string     `json:"notice,omitempty"` // one line above the page, e.g. "You are logged out."
	Result *pdsResult `json:"result,omitempty"`
}

// flashes is the gin-contrib/sessions middleware for the flash cookie, on
// the routes that set or show one.
func (a *Pages) flashes() gin.HandlerFunc {
	return sessions.Sessions(flashCookie, flashStore{a.mgr.CookieStore()})
}

// flashStore is the Manager's CookieStore, for which an unreadable flash
// cookie (tampered, sealed under an old secret, or expired) is no flash
// rather than an error for gin-contrib to log.
type flashStore struct{ *ginoauth.CookieStore }

func (s flashStore) Get(r *http.Request, name string) (*gsessions.Session, error) {
	sess, _ := s.CookieStore.Get(r, name) // an unreadable cookie gives a new, empty session
	return sess, nil
}

// redirectWithFlash keeps f for the next page and sends the browser there
// with 303 See Other (which a browser follows with GET).
func (a *Pages) redirectWithFlash(c *gin.Context, to string, f flash) {
	if f.Result != nil && len(f.Result.Answer) > maxFlashAnswer {
		f.Result.Answer = nil
		f.Result.Summary += " (The full answer is too long to show here.)"
	}
	data, err := json.Marshal(f)
	if err == nil {
		s := sessions.Default(c)
		s.Clear() // a flash not yet shown is replaced
		s.AddFlash(string(data))
		s.Options(a.flashOptions(int(flashTTL / time.Second)))
		err = s.Save()
	}
	if err != nil {
		// The redirect still happens; the next page just has no result.
		a.log.Warn("flash not saved", "err", err)
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, to)
}

// takeFlash returns the flash the request carries, if any, and deletes its
// cookie: a flash is shown once, and a reload shows the page without it.
func (a *Pages) takeFlash(c *gin.Context) (flash, bool) {
	var f flash
	if _, err := c.Request.Cookie(flashCookie); err != nil {
		return f, false // no cookie: nothing to read, no Set-Cookie
	}
	s := sessions.Default(c)
	values := s.Flashes()
	s.Options(a.flashOptions(-1)) // Max-Age < 0: the store deletes the cookie
	if err := s.Save(); err != nil {
		a.log.Warn("flash not cleared", "err", err)
	}
	c.Header("Cache-Control", "no-store")
	if len(values) == 0 {
		return f, false
	}
	text, _ := values[len(values)-1].(string)
	if json.Unmarshal([]byte(text), &f) != nil {
		return flash{}, false
	}
	return f, true
}

// flashOptions are the flash cookie's attributes: like the session
// cookie's (HttpOnly, SameSite=Lax, Secure on https), with its own Max-Age.
func (a *Pages) flashOptions(maxAge int) sessions.Options {
	return sessions.Options{
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   strings.HasPrefix(a.opts.BaseURL, "https://"),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
