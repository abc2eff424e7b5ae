package ginoauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// This file is an account's devices: listing its device sessions and
// ending one, the others or all, through the session core's per-account
// index (session_index.go), and the prebuilt routes for them.

// SessionInfo describes one device session of an account.
type SessionInfo struct {
	// Ref is an opaque reference to the session, for EndSession. It is
	// not the session id and cannot be used to log in.
	Ref       string    `json:"ref"`
	Kind      string    `json:"kind"`   // "web" (a browser) or "mobile" (a native app)
	Device    string    `json:"device"` // short description from the User-Agent at login, e.g. "Firefox on Linux"
	IP        string    `json:"ip,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"` // coarse: to the hour
	ExpiresAt time.Time `json:"expires_at"`
	Current   bool      `json:"current"` // the session of the request that listed them
}

// ref is a session's opaque reference: an HMAC of its hash under a key
// derived from the cookie secret, so a reference reveals nothing and can
// only be made by this app.
func (m *Manager) ref(hash string) string {
	mac := hmac.New(sha256.New, m.refKey)
	mac.Write([]byte(hash))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// SessionsOf lists the live device sessions (web and mobile) of an
// account, newest first. current, if not nil, marks the session of that
// user as Current. It needs a Storage with a storage.Indexer (ErrNoIndex
// otherwise).
func (m *Manager) SessionsOf(ctx context.Context, did string, current *User) ([]SessionInfo, error) {
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		return nil, err
	}
	out := make([]SessionInfo, 0, len(recs))
	for i, rec := range recs {
		info := SessionInfo{
			Ref: m.ref(hashes[i]), Kind: rec.kind(), Device: rec.Device, IP: rec.IP,
			CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt,
			Current: current != nil && current.sessionHash == hashes[i],
		}
		info.LastSeen = m.sessions.lastSeen(ctx, hashes[i], rec.CreatedAt)
		if info.Current {
			info.LastSeen = m.now()
		}
		info.LastSeen = info.LastSeen.Truncate(time.Hour)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// EndSession ends the session of did named by ref (a SessionInfo.Ref), on
// every instance: its tokens are revoked at the authorization server and
// its records deleted. It reports whether such a session existed.
func (m *Manager) EndSession(ctx context.Context, did, ref string) (bool, error) {
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		return false, err
	}
	for i, h := range hashes {
		if hmac.Equal([]byte(m.ref(h)), []byte(ref)) {
			return true, m.sessions.end(ctx, h, &recs[i], EndByUser)
		}
	}
	return false, nil
}

// EndAllSessions ends every session of did, on every instance (the
// current request's too), revoking each one's tokens, and the grant kept
// for background access. It returns how many device sessions it ended.
// Use it after a password scare, or to end a user's access.
func (m *Manager) EndAllSessions(ctx context.Context, did string) (int, error) {
	n, err := m.endSessionsOf(ctx, did, "", EndEverywhere)
	m.dropBackground(ctx, did, "", true)
	return n, err
}

// endSessionsOf ends every session of did but keep.
func (m *Manager) endSessionsOf(ctx context.Context, did, keep string, reason EndReason) (int, error) {
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i, h := range hashes {
		if h == keep {
			continue
		}
		if err := m.sessions.end(ctx, h, &recs[i], reason); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// describeDevice turns a User-Agent into a short description such as
// "Firefox on Linux" or "Safari on iPhone". No IP address, no version.
func describeDevice(ua string) string {
	if ua == "" {
		return "Unknown device"
	}
	has := func(s string) bool { return strings.Contains(ua, s) }
	browser := ""
	switch {
	case has("Edg/"):
		browser = "Edge"
	case has("OPR/") || has("Opera"):
		browser = "Opera"
	case has("Firefox/"):
		browser = "Firefox"
	case has("Chrome/") || has("CriOS/") || has("Chromium/"):
		browser = "Chrome"
	case has("Safari/") && has("Version/"):
		browser = "Safari"
	case has("Go-http-client"):
		browser = "Go program"
	case has("curl/"):
		browser = "curl"
	case has("okhttp"):
		browser = "Android app"
	case has("CFNetwork") || has("Darwin/"):
		browser = "iOS app"
	}
	system := ""
	switch {
	case has("iPhone"):
		system = "iPhone"
	case has("iPad"):
		system = "iPad"
	case has("Android"):
		system = "Android"
	case has("Windows"):
		system = "Windows"
	case has("Mac OS X") || has("Macintosh"):
		system = "macOS"
	case has("CrOS"):
		system = "ChromeOS"
	case has("Linux"):
		system = "Linux"
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "Browser on " + system
	}
	if len(ua) > 40 {
		ua = ua[:40]
	}
	return strings.ToValidUTF8(ua, "")
}

// clientIP is the request's client address, kept only when
// Config.RecordIP asks for it.
func (m *Manager) clientIP(c *gin.Context) string {
	if !m.cfg.RecordIP {
		return ""
	}
	return c.ClientIP()
}

// The prebuilt device routes for the logged-in user (mounted by Mount when
// the Storage has an Indexer): list, end one, end the others, end all.
func (m *Manager) listSessionsHandler() gin.HandlerFunc {
	return func(c *gin.Context) {
		u, err := m.ValidateSession(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		list, err := m.SessionsOf(c.Request.Context(), u.DID, u)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, gin.H{"sessions": list})
	}
}

func (m *Manager) endSessionsHandler(which string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if m.crossOrigin(c.Request) {
			m.refuseCrossSite(c)
			return
		}
		u, err := m.ValidateSession(c)
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		ctx := c.Request.Context()
		ended := 0
		switch which {
		case "one":
			ref, ok := m.bodyRef(c)
			if !ok {
				return
			}
			var found bool
			if found, err = m.EndSession(ctx, u.DID, ref); err == nil && found {
				ended = 1
			} else if err == nil {
				c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "no such session of yours", "code": codeNoSuchSession})
				return
			}
			if m.ref(u.sessionHash) == ref && err == nil {
				err = m.dropActive(c) // this browser's other accounts stay
			}
		case "others":
			ended, err = m.endSessionsOf(ctx, u.DID, u.sessionHash, EndByUser)
		default:
			ended, err = m.EndAllSessions(ctx, u.DID)
			if err == nil {
				err = m.dropActive(c) // this browser's other accounts stay
			}
		}
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, gin.H{"success": true, "ended": ended})
	}
}

// bodyRef reads the ref of the session to end from the request body (JSON
// {"ref"} or a form), never from the query; bad input is answered here.
func (m *Manager) bodyRef(c *gin.Context) (string, bool) {
	var ref string
	if isJSON(c.Request) {
		if err := readJSONObject(c, map[string]*string{"ref": &ref}); err != nil {
			m.abortWithError(c, err)
			return "", false
		}
	} else {
		form, ok := m.postForm(c)
		if !ok {
			return "", false
		}
		ref = form.Get("ref")
	}
	if ref == "" || len(ref) > 64 {
		m.abortWithError(c, badRequest("give the ref of the session to end"))
		return "", false
	}
	return ref, true
}
