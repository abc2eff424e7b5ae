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
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file is about an account's devices: the per-account index of
// device sessions (a storage.Indexer set per account), listing them, ending
// one, the others or all, and reaching an account's PDS outside a request.

// indexPrefix names the index set of an account: acct:{did}. Its members
// are the hashes of the account's session ids.
const indexPrefix = "acct:"

// seenPrefix keys the coarse last-seen time of a session: seen:{hash}.
const seenPrefix = "seen:"

// lastSeenEvery is how often a session's last-seen time is written (by
// each instance, in the background): coarse on purpose, to keep writes off
// the request path.
const lastSeenEvery = time.Hour

// ErrNoIndex is returned by the device operations when the Storage has no
// storage.Indexer: they need the per-account index of sessions.
var ErrNoIndex = errors.New("ginoauth: the Storage has no storage.Indexer (a per-account index of sessions), which listing and ending an account's sessions need")

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

func (m *Manager) indexer() (storage.Indexer, error) {
	ix, ok := m.store.(storage.Indexer)
	if !ok {
		return nil, ErrNoIndex
	}
	return ix, nil
}

// index adds a new session to its account's index (when the Storage has
// one); a failure fails the login, since an unindexed session could not
// be ended everywhere.
func (m *Manager) index(ctx context.Context, did, hash string, ttl time.Duration) error {
	ix, ok := m.store.(storage.Indexer)
	if !ok {
		return nil
	}
	ctx, cancel := m.op(ctx)
	defer cancel()
	return m.storageFailed("index", ix.AddMember(ctx, indexPrefix+did, hash, ttl))
}

func (m *Manager) unindex(ctx context.Context, did, hash string) error {
	ix, ok := m.store.(storage.Indexer)
	if !ok || did == "" {
		return nil
	}
	ctx, cancel := m.op(ctx)
	defer cancel()
	return m.storageFailed("index", ix.RemoveMember(ctx, indexPrefix+did, hash))
}

// ref is a session's opaque reference: an HMAC of its hash under a key
// derived from the cookie secret, so a reference reveals nothing and can
// only be made by this app.
func (m *Manager) ref(hash string) string {
	mac := hmac.New(sha256.New, m.refKey)
	mac.Write([]byte(hash))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// accountSessions returns the live sessions of did, dropping from the index
// any member whose session has ended.
func (m *Manager) accountSessions(ctx context.Context, did string) ([]string, []sessionRecord, error) {
	ix, err := m.indexer()
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := m.op(ctx)
	members, err := ix.Members(octx, indexPrefix+did)
	cancel()
	if err != nil {
		return nil, nil, m.storageFailed("index", err)
	}
	var hashes []string
	var recs []sessionRecord
	now := m.now()
	for _, h := range members {
		var rec sessionRecord
		switch err := m.getRecord(ctx, h, &rec); {
		case errors.Is(err, ErrNotFound):
			_ = m.unindex(ctx, did, h) // ended; the index catches up
			continue
		case err != nil:
			return nil, nil, err
		}
		if rec.DID != did || !now.Before(rec.ExpiresAt) || (!rec.GraceUntil.IsZero() && !now.Before(rec.GraceUntil)) {
			continue
		}
		hashes, recs = append(hashes, h), append(recs, rec)
	}
	return hashes, recs, nil
}

// SessionsOf lists the live device sessions (web and mobile) of an
// account, newest first. current, if not nil, marks the session of that
// user as Current. It needs a Storage with a storage.Indexer (ErrNoIndex
// otherwise).
func (m *Manager) SessionsOf(ctx context.Context, did string, current *User) ([]SessionInfo, error) {
	hashes, recs, err := m.accountSessions(ctx, did)
	if err != nil {
		return nil, err
	}
	out := make([]SessionInfo, 0, len(recs))
	for i, rec := range recs {
		info := SessionInfo{
			Ref: m.ref(hashes[i]), Kind: rec.kind(), Device: rec.Device, IP: rec.IP,
			CreatedAt: rec.CreatedAt, LastSeen: rec.CreatedAt, ExpiresAt: rec.ExpiresAt,
			Current: current != nil && current.sessionHash == hashes[i],
		}
		var seen time.Time
		if err := m.getJSON(ctx, seenPrefix+hashes[i], &seen); err == nil && seen.After(info.LastSeen) {
			info.LastSeen = seen
		}
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
	hashes, recs, err := m.accountSessions(ctx, did)
	if err != nil {
		return false, err
	}
	for i, h := range hashes {
		if hmac.Equal([]byte(m.ref(h)), []byte(ref)) {
			return true, m.endDevice(ctx, h, &recs[i], EndByUser)
		}
	}
	return false, nil
}

// EndAllSessions ends every session of did, on every instance (the
// current request's too), revoking each one's tokens. It returns how many
// it ended. Use it after a password scare, or to end a user's access.
func (m *Manager) EndAllSessions(ctx context.Context, did string) (int, error) {
	return m.endSessionsOf(ctx, did, "", EndEverywhere)
}

// endSessionsOf ends every session of did but keep.
func (m *Manager) endSessionsOf(ctx context.Context, did, keep, reason string) (int, error) {
	hashes, recs, err := m.accountSessions(ctx, did)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i, h := range hashes {
		if h == keep {
			continue
		}
		if err := m.endDevice(ctx, h, &recs[i], reason); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// endDevice ends one session: records first (so it is refused at once on
// every instance), then the index entry, then the tokens (in the
// background for a session found expired on the request path, whose
// request need not wait for the authorization server; not at all when the
// OAuth session is already gone).
func (m *Manager) endDevice(ctx context.Context, hash string, rec *sessionRecord, reason string) error {
	if err := m.deleteSessionRecords(ctx, hash); err != nil {
		return err
	}
	if rec.Previous != "" {
		_ = m.delete(ctx, sessionKeyPrefix+rec.Previous)
	}
	if rec.Successor != "" {
		if t, err := m.openSuccessor(hash, rec.Successor); err == nil {
			_ = m.delete(ctx, sessionKeyPrefix+hashSessionID(t))
		}
	}
	_ = m.unindex(ctx, rec.DID, hash)
	m.forget(hash)
	switch {
	case rec.OAuthSessionID == "" || reason == EndRevoked || reason == EndRefreshRefused:
	case reason == EndExpired || reason == EndIdle:
		did, id := rec.DID, rec.OAuthSessionID
		m.bg.run(func() { m.revoke(context.Background(), did, id, hash) })
	default:
		m.revoke(ctx, rec.DID, rec.OAuthSessionID, hash)
	}
	typ := EventSessionEnded
	if reason == EndLogout {
		typ = EventLogout
	}
	m.emit(typ, reason, rec, hash)
	return nil
}

// emit sends a lifecycle event to Config.OnEvent.
func (m *Manager) emit(typ EventType, reason string, rec *sessionRecord, hash string) {
	m.hooks.emit(m, Event{Type: typ, Reason: reason, DID: rec.DID, Handle: rec.Handle, Session: m.ref(hash), Kind: rec.kind(), Time: m.now()})
}

// OAuthSessionForAccount returns a ready OAuth session of did's most
// recently used login, for work outside a request: background jobs,
// webhooks. Among several sessions it picks the one seen last (then the
// newest); it goes through the same coordinated refresh as a request, and
// a refused refresh ends that device session. An account with no live
// session gives a *SessionError with SessionNotLoggedIn; authentication-only
// logins give ErrAuthenticationOnly. It needs a storage.Indexer.
func (m *Manager) OAuthSessionForAccount(ctx context.Context, did string) (OAuthSession, error) {
	hashes, recs, err := m.accountSessions(ctx, did)
	if err != nil {
		return nil, err
	}
	best := -1
	var bestSeen time.Time
	for i, rec := range recs {
		if rec.OAuthSessionID == "" {
			continue
		}
		seen := rec.CreatedAt
		var s time.Time
		if err := m.getJSON(ctx, seenPrefix+hashes[i], &s); err == nil && s.After(seen) {
			seen = s
		}
		if best < 0 || seen.After(bestSeen) {
			best, bestSeen = i, seen
		}
	}
	if best < 0 {
		if len(recs) > 0 {
			return nil, ErrAuthenticationOnly
		}
		return nil, &SessionError{Code: SessionNotLoggedIn}
	}
	rec := recs[best]
	sess, err := m.client.Resume(ctx, rec.DID, rec.OAuthSessionID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			_ = m.endDevice(ctx, hashes[best], &rec, EndRevoked)
			return nil, &SessionError{Code: SessionOAuthGone, Err: err}
		}
		return nil, storage.Wrap("get", err)
	}
	return &deviceBoundSession{OAuthSession: sess, m: m, hash: hashes[best], rec: rec}, nil
}

// noteSeen records, at most once an hour per session and instance and off
// the request path, when a session was last used.
func (m *Manager) noteSeen(u *User) {
	now := m.now()
	m.seenMu.Lock()
	if last, ok := m.seen[u.sessionHash]; ok && now.Sub(last) < lastSeenEvery {
		m.seenMu.Unlock()
		return
	}
	if len(m.seen) > 100_000 {
		clear(m.seen)
	}
	m.seen[u.sessionHash] = now
	m.seenMu.Unlock()
	ttl := u.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return
	}
	hash := u.sessionHash
	m.bg.run(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*m.cfg.StorageTimeout)
		defer cancel()
		_ = m.setJSON(ctx, seenPrefix+hash, now, ttl)
	})
}

// forget drops a session from this instance's last-seen bookkeeping.
func (m *Manager) forget(hash string) {
	m.seenMu.Lock()
	delete(m.seen, hash)
	m.seenMu.Unlock()
}

// seenTracker is the Manager's per-instance last-seen bookkeeping.
type seenTracker struct {
	seenMu sync.Mutex
	seen   map[string]time.Time
}

// storageFailed wraps a storage failure as a *StorageError and counts it.
func (m *Manager) storageFailed(op string, err error) error {
	err = storage.Wrap(op, err)
	if err != nil && !errors.Is(err, ErrNotFound) {
		m.metrics.StorageFailed(op)
	}
	return err
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
		if m.fromOtherSite(c.Request) {
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
			var body struct {
				Ref string `json:"ref" form:"ref"`
			}
			if err := c.ShouldBind(&body); err != nil || body.Ref == "" || len(body.Ref) > 64 {
				m.abortWithError(c, &OAuthFlowError{Code: FlowInvalidRequest, Message: "give the ref of the session to end"})
				return
			}
			var found bool
			if found, err = m.EndSession(ctx, u.DID, body.Ref); err == nil && found {
				ended = 1
			} else if err == nil {
				c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "no such session of yours", "code": CodeNoSuchSession})
				return
			}
			if m.ref(u.sessionHash) == body.Ref {
				m.clearSessionCookie(c)
			}
		case "others":
			ended, err = m.endSessionsOf(ctx, u.DID, u.sessionHash, EndByUser)
		default:
			ended, err = m.EndAllSessions(ctx, u.DID)
			m.clearSessionCookie(c)
		}
		if err != nil {
			m.abortWithError(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, gin.H{"success": true, "ended": ended})
	}
}

// CodeNoSuchSession answers an end-session request whose ref names no live
// session of the user (404).
const CodeNoSuchSession = "no_such_session"
