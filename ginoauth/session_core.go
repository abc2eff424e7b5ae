package ginoauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// This file, session_end.go and session_index.go are the session core: the
// one layer that creates, reads, touches, expires, ends and indexes device
// sessions (a browser's, behind the session cookie, or a native app's,
// behind a bearer token), and the only code that knows their storage keys.
// The web login, the native-app flow, the device routes and the middleware
// call into it; cookie and bearer are two ways in, not two copies.
//
// Storage keys of the core:
//
//	sess:{sha256(session id)}  one record per login per device
//	seen:{sha256(session id)}  coarse last-seen time, for the device list
//	acct:{did}                 the account's index set (storage.Indexer)
//
// Session ids are stored hashed, so a leaked database holds no usable
// cookie values or tokens.
const (
	sessionKeyPrefix = "sess:"
	seenPrefix       = "seen:"
	indexPrefix      = "acct:"
)

const (
	sessionIDBytes = 32 // 256-bit session ids
	// sessionIDLen is the base64url length of a session id; anything else
	// in a cookie or token is rejected before touching storage.
	sessionIDLen = 43
	// lastSeenEvery is how often a session's last-seen time is written (by
	// each instance, in the background): coarse on purpose, to keep writes
	// off the request path.
	lastSeenEvery = time.Hour
)

// Kinds of device session.
const (
	kindWeb    = "web"    // a browser, by cookie
	kindMobile = "mobile" // a native app, by bearer token
)

// deviceSessions is the session core (see the top of this file).
type deviceSessions struct {
	store    storage.Store
	ix       storage.Indexer // nil when the Storage has no index
	timeout  time.Duration   // per storage operation
	now      func() time.Time
	log      *slog.Logger
	metrics  Metrics
	bg       *background
	resolver any // the OAuth client, for User.Allows on permission sets
	cache    recordCache
	seen     seenTracker
	// localLocks are the device locks when the Storage has no Locker.
	localLocks lease.ProcessLocks
	// lockLease is the renewed lease of device and code locks
	// (renewedLockLease; tests shorten it).
	lockLease time.Duration

	// The sliding lifetime (see lifetime.go): how long each kind lasts
	// without use, the app's cap from the login (0: the grant's), the
	// capabilities extending needs (nil: sessions are not extended), and
	// this instance's record of when it last extended each session.
	lifetime     map[string]time.Duration
	maxAge       time.Duration
	swapper      storage.Swapper
	limiter      oauthclient.GrantLimiter
	extendedHere seenTracker
	resealedHere seenTracker // when this instance last resealed a session's cookie
	// background is Config.BackgroundAccess: a grant may outlive its
	// device sessions (grant_background.go).
	background bool
	// staleness is the Storage's storage.StaleReader bound (0: none, or no
	// replica): the session check may read a copy that old.
	staleness time.Duration
	// checkDeadline bounds the session check's read.
	checkDeadline sharedDeadline
	// identity starts the background identity checks (identity.go).
	identity identityChecks

	// What ending a session needs from the rest of the Manager.
	revoke        func(ctx context.Context, did, oauthSessionID, hash string)
	emit          func(typ EventType, reason EndReason, rec *sessionRecord, hash string)
	successorHash func(hash, sealed string) (string, bool)
}

// sessionRecord is what sess:{hash} holds.
type sessionRecord struct {
	Kind           string    `json:"kind,omitempty"` // kindWeb when empty
	DID            string    `json:"did"`
	Handle         string    `json:"handle,omitempty"`
	OAuthSessionID string    `json:"oauth_session_id"`
	Scopes         []string  `json:"scopes,omitempty"`
	Requested      []string  `json:"requested,omitempty"` // what the login asked for, for a step-up
	Device         string    `json:"device,omitempty"`    // from the User-Agent at login
	IP             string    `json:"ip,omitempty"`        // only with Config.RecordIP
	CreatedAt      time.Time `json:"created_at"`
	ExpiresAt      time.Time `json:"expires_at"`

	// A native app's token rotation: the rotated-out record stays valid
	// until GraceUntil and holds its successor (sealed), so that a retried
	// rotation gets the same new token; the successor names its predecessor
	// so that a logout ends both.
	GraceUntil time.Time `json:"grace_until,omitzero"`
	Successor  string    `json:"successor,omitempty"`
	Previous   string    `json:"previous,omitempty"`

	// The sliding lifetime: ExpiresAt was last set at Extended, to the
	// earliest of Extended plus the kind's lifetime, the app's cap and the
	// grant's limits as then known (GrantRefreshBy: when the grant dies
	// unless refreshed; GrantEndsAt: when it ends whatever happens; zero
	// when the OAuth client cannot say).
	Extended       time.Time `json:"extended,omitzero"`
	GrantRefreshBy time.Time `json:"grant_refresh_by,omitzero"`
	GrantEndsAt    time.Time `json:"grant_ends_at,omitzero"`

	// Browser names the browser a web session was logged in in: every
	// account of one browser's cookie shares it (accounts.go), so a
	// session of another browser is never taken for one of this one's.
	Browser string `json:"browser,omitempty"`

	// AccountStatus is the account's status at its PDS when a check found
	// it inactive and Config.KeepDeactivatedSessions kept the session
	// ("deactivated", "suspended"); "" for an active account.
	AccountStatus string `json:"account_status,omitempty"`
}

func (rec *sessionRecord) kind() string {
	if rec.Kind == "" {
		return kindWeb
	}
	return rec.Kind
}

// live reports whether rec may still be used at now: before its expiry,
// and (a rotated-out native token) within its grace window.
func (rec *sessionRecord) live(now time.Time) bool {
	return now.Before(rec.ExpiresAt) && (rec.GraceUntil.IsZero() || now.Before(rec.GraceUntil))
}

// endedByGrant reports whether rec's expiry is its grant's limit, not the
// app's cap (maxAge; 0: none): the session then ends because the grant
// does (EndGrantExpired).
func (rec *sessionRecord) endedByGrant(maxAge time.Duration) bool {
	if maxAge > 0 && !rec.ExpiresAt.Before(rec.CreatedAt.Add(maxAge)) {
		return false
	}
	return !rec.GrantRefreshBy.IsZero() && !rec.ExpiresAt.Before(rec.GrantRefreshBy) ||
		!rec.GrantEndsAt.IsZero() && !rec.ExpiresAt.Before(rec.GrantEndsAt)
}

// ttl is how long rec has left to live at now: to its expiry, or to the
// end of its grace window.
func (rec *sessionRecord) ttl(now time.Time) time.Duration {
	end := rec.ExpiresAt
	if !rec.GraceUntil.IsZero() && rec.GraceUntil.Before(end) {
		end = rec.GraceUntil
	}
	return end.Sub(now)
}

// User is the logged-in account of the current request's session.
type User struct {
	DID       string    // the account DID (the token's sub)
	Handle    string    // verified handle at login, "" if it could not be verified
	Scopes    []string  // scopes granted to this session, as of its last token refresh
	CreatedAt time.Time // when this device logged in
	ExpiresAt time.Time // absolute end of this session
	// AccountStatus is "" for an active account, or "deactivated" or
	// "suspended" when a background check found the account so and
	// Config.KeepDeactivatedSessions kept its sessions: the app may offer
	// to reactivate it, and the PDS refuses most writes meanwhile.
	AccountStatus string

	sessionHash    string // sha256 of the session id: the record's key suffix
	oauthSessionID string
	requested      []string // the scopes the login asked for
	resolver       any      // the OAuth client, when it resolves permission sets
	kind           string   // kindWeb or kindMobile
	// A native app's rotated tokens: the record this one replaced, and the
	// sealed successor of a rotated-out one.
	previous, successor string
	grantRefreshBy      time.Time    // when the grant dies unless refreshed (zero: unknown)
	cookieUntil         time.Time    // how long its cookie lasts (see deviceSessions.cookieUntil)
	state               sessionState // the request's state, when this is its user
	extended            bool         // this request extended the session: reseal its cookie
	// A browser's: its session id, and its cookie's other accounts (as
	// the cookie has them, see accounts.go) and the latest until of theirs.
	sid         string
	others      string
	othersUntil int64
	browser     string // its record's Browser
}

// OAuthSessionID is the OAuth client's id for this login's OAuth session,
// as oauthclient.Client.Resume takes it, for apps that use the client
// directly.
func (u *User) OAuthSessionID() string { return u.oauthSessionID }

// record is the part of a session record that ending it (and its device
// lock) needs.
func (u *User) record() *sessionRecord {
	return &sessionRecord{Kind: u.kind, DID: u.DID, Handle: u.Handle, AccountStatus: u.AccountStatus, OAuthSessionID: u.oauthSessionID, CreatedAt: u.CreatedAt, Previous: u.previous, Successor: u.successor,
		GrantRefreshBy: u.grantRefreshBy}
}

// user is the User a session record describes; hash is the record's key
// suffix.
func (ds *deviceSessions) user(rec *sessionRecord, hash string) *User {
	return &User{
		DID: rec.DID, Handle: rec.Handle, Scopes: rec.Scopes, // rec is the caller's own, freshly decoded
		CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt, AccountStatus: rec.AccountStatus,
		sessionHash: hash, oauthSessionID: rec.OAuthSessionID, requested: rec.Requested,
		resolver: ds.resolver, kind: rec.kind(), previous: rec.Previous, successor: rec.Successor,
		grantRefreshBy: rec.GrantRefreshBy, cookieUntil: ds.cookieUntil(rec), browser: rec.Browser,
	}
}

// read returns the user of the session of id sid, or the code saying why
// there is none. It checks the kind (a cookie never opens a native app's
// session, nor a token a browser's) and the lifetimes; a session past
// them is ended here, and a live one is noted as seen. The only error is a
// *storage.Error.
func (ds *deviceSessions) read(ctx context.Context, sid, kind string) (*User, ErrorCode, error) {
	key := sessionKeyOf(sid)
	hash := key[len(sessionKeyPrefix):]
	var rec sessionRecord
	now := ds.now()
	primary := false // whether rec is the primary's copy, as of now
	if !ds.cache.get(hash, now, &rec) {
		switch err := ds.getForCheck(key, &rec); {
		case errors.Is(err, storage.ErrNotFound):
			return nil, CodeNotLoggedIn, nil // logged out elsewhere, or expired in storage
		case err != nil:
			return nil, "", err
		}
		primary = ds.staleness == 0
		ds.cache.put(hash, &rec, now)
	}
	if rec.kind() != kind {
		if kind == kindMobile {
			return nil, CodeInvalidToken, nil
		}
		return nil, CodeInvalidCookie, nil
	}
	if !rec.GraceUntil.IsZero() && !now.Before(rec.GraceUntil) {
		return nil, CodeNotLoggedIn, nil // a rotated-out token past its grace
	}
	due := ds.extendDue(hash, &rec, now)
	if (due || !now.Before(rec.ExpiresAt)) && !primary {
		// What follows writes: decide on the primary's copy, not on a
		// replica's or the cache's (it may have been extended since).
		switch err := ds.get(ctx, hash, &rec); {
		case errors.Is(err, storage.ErrNotFound):
			ds.cache.drop(hash)
			return nil, CodeNotLoggedIn, nil
		case err != nil:
			return nil, "", err
		}
		ds.cache.put(hash, &rec, now)
	}
	if !now.Before(rec.ExpiresAt) {
		return ds.endExpired(ctx, hash, rec)
	}
	extended := false
	if due {
		var code ErrorCode
		if extended, code = ds.extend(ctx, hash, &rec, now); code != "" {
			return nil, code, nil
		}
	}
	u := ds.user(&rec, hash)
	u.extended = extended
	ds.noteSeen(u)
	ds.noteIdentity(u.DID, now)
	return u, "", nil
}

// endExpired ends the expired session rec (under hash) with the reason
// its expiry gives. rec is a copy, so that read's own record stays on the
// stack on the path every check takes.
func (ds *deviceSessions) endExpired(ctx context.Context, hash string, rec sessionRecord) (*User, ErrorCode, error) {
	if rec.endedByGrant(ds.maxAge) {
		return nil, CodeGrantExpired, ds.end(ctx, hash, &rec, EndGrantExpired)
	}
	return nil, CodeSessionExpired, ds.end(ctx, hash, &rec, EndExpired)
}

// createAs stores rec under the session id id (random, chosen by the
// caller: a native app's rotation picks its new token before it stores it),
// with its lifetime starting now (see lifetime.go), and adds it to its
// account's index, returning the id's hash. An index failure fails the
// creation: an unindexed session could not be ended everywhere.
func (ds *deviceSessions) createAs(ctx context.Context, id string, rec *sessionRecord) (hash string, err error) {
	now := ds.now()
	rec.Extended = now
	rec.ExpiresAt = ds.expiry(rec, now)
	ttl := recordTTL(rec.ExpiresAt, now)
	if ttl <= 0 {
		return "", &SessionError{Code: CodeSessionExpired}
	}
	hash = hashSessionID(id)
	if err := ds.put(ctx, hash, rec, ttl); err != nil {
		return "", err
	}
	if err := ds.index(ctx, rec.DID, hash, ttl); err != nil {
		_ = ds.deleteRecords(ctx, hash)
		return "", err
	}
	return hash, nil
}

// start is create for a new login: it also reports the login.
func (ds *deviceSessions) start(ctx context.Context, rec *sessionRecord) (id, hash string, err error) {
	id = randomToken(sessionIDBytes)
	if hash, err = ds.startAs(ctx, id, rec); err != nil {
		return "", "", err
	}
	return id, hash, nil
}

// startAs is start with a session id chosen by the caller.
func (ds *deviceSessions) startAs(ctx context.Context, id string, rec *sessionRecord) (hash string, err error) {
	if hash, err = ds.createAs(ctx, id, rec); err == nil {
		ds.log.Info("session started", "did", rec.DID, "kind", rec.kind(), "session", shortRef(hash))
		ds.emit(EventLogin, "", rec, hash)
	}
	return hash, err
}

// op bounds one storage operation.
func (ds *deviceSessions) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, ds.timeout)
}

// get loads the record under hash: storage.ErrNotFound, a *storage.Error,
// or the record (an unreadable one counts as not found).
func (ds *deviceSessions) get(ctx context.Context, hash string, rec *sessionRecord) error {
	ctx, cancel := ds.op(ctx)
	defer cancel()
	raw, err := ds.store.Get(ctx, sessionKeyPrefix+hash)
	return ds.decodeRead(raw, err, rec)
}

// getForCheck reads the record under key for the session check: a read a
// replica may answer (storage.StaleReader, within its bound), the one read
// that may (anything that writes reads the primary again first). It runs
// under a deadline shared by the checks of a few milliseconds (see
// sharedDeadline), not the request's own: a session check costs no
// context and timer of its own.
func (ds *deviceSessions) getForCheck(key string, rec *sessionRecord) error {
	ctx := ds.checkDeadline.context()
	var (
		raw []byte
		err error
	)
	if ds.staleness == 0 {
		raw, err = ds.store.Get(ctx, key)
	} else {
		raw, err = storage.GetStale(ctx, ds.store, key)
	}
	return ds.decodeRead(raw, err, rec)
}

// decodeRead decodes a storage read of a record into rec: the read's
// failure as a *storage.Error (ErrNotFound as is), and an unreadable record
// as not found.
func (ds *deviceSessions) decodeRead(raw []byte, err error, rec *sessionRecord) error {
	if err != nil {
		return storageFailed(ds.metrics, "get", err)
	}
	if err := decodeRecord(raw, rec); err != nil {
		ds.log.Warn("unreadable session record in storage; ignoring it", "err", err)
		return storage.ErrNotFound
	}
	return nil
}

// put stores rec under hash for ttl.
func (ds *deviceSessions) put(ctx context.Context, hash string, rec *sessionRecord, ttl time.Duration) error {
	ds.cache.drop(hash)
	ctx, cancel := ds.op(ctx)
	defer cancel()
	return storageFailed(ds.metrics, "set", ds.store.Set(ctx, sessionKeyPrefix+hash, encodeRecord(rec), ttl))
}

// deleteRecords deletes a session's record and its last-seen time.
func (ds *deviceSessions) deleteRecords(ctx context.Context, hash string) error {
	ds.cache.drop(hash) // before: a request racing this delete must not re-cache it
	octx, cancel := ds.op(ctx)
	err := storageFailed(ds.metrics, "delete", ds.store.Delete(octx, sessionKeyPrefix+hash))
	cancel()
	ds.cache.drop(hash)
	if err == nil {
		octx, cancel := ds.op(ctx)
		_ = ds.store.Delete(octx, seenPrefix+hash) // only the device list reads it; it expires anyway
		cancel()
	}
	return err
}

// noteSeen records, at most once an hour per session and instance and off
// the request path, when a session was last used.
func (ds *deviceSessions) noteSeen(u *User) {
	now := ds.now()
	if !ds.seen.dueWithin(u.sessionHash, now, lastSeenEvery) {
		return
	}
	ttl := u.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return
	}
	hash := u.sessionHash
	ds.bg.run(func() {
		raw, _ := json.Marshal(now)
		ctx, cancel := context.WithTimeout(context.Background(), 2*ds.timeout)
		defer cancel()
		_ = storageFailed(ds.metrics, "set", ds.store.Set(ctx, seenPrefix+hash, raw, ttl))
	})
}

// lastSeen is when the session under hash was last used, as far as the
// coarse last-seen record knows; at least since.
func (ds *deviceSessions) lastSeen(ctx context.Context, hash string, since time.Time) time.Time {
	ctx, cancel := ds.op(ctx)
	defer cancel()
	var seen time.Time
	if raw, err := ds.store.Get(ctx, seenPrefix+hash); err == nil && json.Unmarshal(raw, &seen) == nil && seen.After(since) {
		return seen
	}
	return since
}

// seenTracker is per-instance bookkeeping of when something was last done
// for each session (noting it seen, extending it), so that concurrent
// requests do it once per period.
type seenTracker struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// dueWithin is due for another period: it reports whether hash was not
// noted within every before now, and if so notes it.
func (st *seenTracker) dueWithin(hash string, now time.Time, every time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if last, ok := st.seen[hash]; ok && now.Sub(last) < every && !now.Before(last) {
		return false
	}
	if st.seen == nil || len(st.seen) > 100_000 {
		st.seen = map[string]time.Time{}
	}
	st.seen[hash] = now
	return true
}

// dueAfter is dueWithin counting the first period from the first time
// hash is seen: the first sighting is noted, not due.
func (st *seenTracker) dueAfter(hash string, now time.Time, every time.Duration) bool {
	st.mu.Lock()
	if _, ok := st.seen[hash]; !ok {
		if st.seen == nil || len(st.seen) > 100_000 {
			st.seen = map[string]time.Time{}
		}
		st.seen[hash] = now
		st.mu.Unlock()
		return false
	}
	st.mu.Unlock()
	return st.dueWithin(hash, now, every)
}

// forget drops a session from the bookkeeping.
func (st *seenTracker) forget(hash string) {
	st.mu.Lock()
	delete(st.seen, hash)
	st.mu.Unlock()
}

// Session records are read on every authenticated request, so they are
// stored in a compact binary layout rather than JSON (decoding JSON was half
// the cost of a session check): a version byte, the fields below, each
// string a uvarint length and its bytes, times as uvarint Unix nanoseconds.
// Version 2 added the sliding lifetime's times, version 3 the browser,
// version 4 the account's status; records of earlier versions, and records
// written as JSON by earlier versions, are still read.
const (
	recordFormatV1 = 1
	recordFormatV2 = 2
	recordFormatV3 = 3
	recordFormat   = 4
)

// encodeRecord lays out rec.
func encodeRecord(rec *sessionRecord) []byte {
	b := make([]byte, 0, 192)
	b = append(b, recordFormat)
	for _, s := range []string{rec.Kind, rec.DID, rec.Handle, rec.OAuthSessionID, rec.Device, rec.IP, rec.Successor, rec.Previous} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range []time.Time{rec.CreatedAt, rec.ExpiresAt, rec.GraceUntil, rec.Extended, rec.GrantRefreshBy, rec.GrantEndsAt} {
		b = binary.AppendUvarint(b, unixNanos(t))
	}
	for _, list := range [][]string{rec.Scopes, rec.Requested} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(rec.Browser)))
	b = append(b, rec.Browser...)
	b = binary.AppendUvarint(b, uint64(len(rec.AccountStatus)))
	return append(b, rec.AccountStatus...)
}

func unixNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(max(t.UnixNano(), 1)) //nolint:gosec // clamped to positive
}

func fromNanos(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC() //nolint:gosec // written from an int64
}

var errBadRecord = errors.New("ginoauth: unreadable session record")

// decodeJSONRecord reads a record written as JSON by an earlier version,
// through a variable of its own, so that the binary path's record stays
// on the caller's stack.
func decodeJSONRecord(raw []byte, rec *sessionRecord) error {
	var r sessionRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	*rec = r
	return nil
}

// decodeRecord reads a record in either format. The strings share raw's
// memory, which the caller hands over (a Store's Get returns a slice the
// caller owns, and nothing writes to it afterwards), so a decode costs one
// allocation, for the lists.
func decodeRecord(raw []byte, rec *sessionRecord) error {
	if len(raw) > 0 && raw[0] == '{' {
		return decodeJSONRecord(raw, rec)
	}
	if len(raw) < 1 || raw[0] < recordFormatV1 || raw[0] > recordFormat {
		return errBadRecord
	}
	times := []*time.Time{&rec.CreatedAt, &rec.ExpiresAt, &rec.GraceUntil, &rec.Extended, &rec.GrantRefreshBy, &rec.GrantEndsAt}
	if raw[0] == recordFormatV1 {
		times = times[:3]
	}
	s := unsafe.String(unsafe.SliceData(raw[1:]), len(raw)-1) //nolint:gosec // G103: raw is the caller's own and never written again (see above)
	pos := 0
	next := func() (uint64, bool) {
		var v uint64
		for shift := uint(0); pos < len(s) && shift < 64; shift += 7 {
			c := s[pos]
			pos++
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return v, true
			}
		}
		return 0, false
	}
	str := func() (string, bool) {
		l, ok := next()
		if !ok || l > uint64(len(s)-pos) { //nolint:gosec // G115: pos <= len(s), so the difference is never negative
			return "", false
		}
		v := s[pos : pos+int(l)] //nolint:gosec // l <= remaining length
		pos += int(l)            //nolint:gosec // as above
		return v, true
	}
	ok := true
	for _, f := range []*string{&rec.Kind, &rec.DID, &rec.Handle, &rec.OAuthSessionID, &rec.Device, &rec.IP, &rec.Successor, &rec.Previous} {
		var good bool
		*f, good = str()
		ok = ok && good
	}
	for _, f := range times {
		n, good := next()
		*f, ok = fromNanos(n), ok && good
	}
	var lists []string // Scopes and Requested share one backing array
	for _, f := range []*[]string{&rec.Scopes, &rec.Requested} {
		n, good := next()
		if !good || n > uint64(len(s)) {
			return errBadRecord
		}
		if n == 0 {
			*f = nil
			continue
		}
		if lists == nil {
			lists = make([]string, 0, int(n)+2) //nolint:gosec // n <= len(s)
		}
		start := len(lists)
		for range n {
			v, g := str()
			ok = ok && g
			lists = append(lists, v)
		}
		*f = lists[start:len(lists):len(lists)]
	}
	if raw[0] >= recordFormatV3 {
		var good bool
		rec.Browser, good = str()
		ok = ok && good
	}
	if raw[0] >= recordFormat {
		var good bool
		rec.AccountStatus, good = str()
		ok = ok && good
	}
	if !ok || pos != len(s) {
		return errBadRecord
	}
	return nil
}

// recordCache is the optional in-process cache of session records
// (Config.SessionCacheTTL): a session ended on this instance is dropped at
// once; one ended on another instance sharing the store can still be
// accepted here for up to the TTL. Its zero TTL caches nothing.
type recordCache struct {
	ttl time.Duration
	max int
	mu  sync.RWMutex
	m   map[string]*cachedRecord
}

// cachedRecord is a session record and when it was read.
type cachedRecord struct {
	rec  sessionRecord
	read time.Time
}

func newRecordCache(ttl time.Duration, maxEntries int) recordCache {
	if maxEntries <= 0 {
		maxEntries = 100_000
	}
	return recordCache{ttl: ttl, max: maxEntries, m: map[string]*cachedRecord{}}
}

// get returns a copy of the cached record for hash, if it is fresh.
func (rc *recordCache) get(hash string, now time.Time, into *sessionRecord) bool {
	if rc.ttl <= 0 {
		return false
	}
	rc.mu.RLock()
	e := rc.m[hash]
	rc.mu.RUnlock()
	if e == nil || now.Sub(e.read) >= rc.ttl || now.Before(e.read) {
		return false
	}
	*into = e.rec
	into.Scopes, into.Requested = slices.Clone(e.rec.Scopes), slices.Clone(e.rec.Requested) // callers may keep them
	return true
}

func (rc *recordCache) put(hash string, rec *sessionRecord, now time.Time) {
	if rc.ttl <= 0 {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.m) >= rc.max {
		for k := range rc.m { // any entry: the cache is a shortcut, not a store
			delete(rc.m, k)
			break
		}
	}
	rc.m[hash] = &cachedRecord{rec: *rec, read: now}
}

func (rc *recordCache) drop(hash string) {
	if rc.ttl <= 0 {
		return
	}
	rc.mu.Lock()
	delete(rc.m, hash)
	rc.mu.Unlock()
}

// hashSessionID is the storage name of a session: the id itself is only
// ever in the cookie or token, so a leaked database cannot be replayed.
func hashSessionID(sid string) string {
	return sessionKeyOf(sid)[len(sessionKeyPrefix):]
}

// sessionKeyOf is the storage key of the session of id sid, built in one
// allocation: its hash is the key without sessionKeyPrefix.
func sessionKeyOf(sid string) string {
	var in [sessionIDLen]byte // ids are this long; the hash of a longer one is only ever compared
	var sum [sha256.Size]byte
	if len(sid) <= len(in) {
		sum = sha256.Sum256(in[:copy(in[:], sid)])
	} else {
		sum = sha256.Sum256([]byte(sid))
	}
	var b [len(sessionKeyPrefix) + 43]byte // the prefix and RawURLEncoding of 32 bytes
	copy(b[:], sessionKeyPrefix)
	base64.RawURLEncoding.Encode(b[len(sessionKeyPrefix):], sum[:])
	return string(b[:])
}

// sharedDeadline hands out contexts that end one storage timeout (and at
// most deadlineWindow more) after they were handed out. Reads started in
// the same window share one context, so a session check does not pay for
// a context and a timer of its own (four allocations, a fifth of the
// check). Its zero value is ready once timeout is set; contexts are real
// time, not the Manager's clock, and do not end with the request: a check
// whose client went away still finishes within the timeout.
type sharedDeadline struct {
	timeout time.Duration
	current atomic.Pointer[windowContext]
}

// deadlineWindow is how long one context is handed out for.
const deadlineWindow = 10 * time.Millisecond

type windowContext struct {
	ctx    context.Context
	cancel context.CancelFunc // never called early (see context); kept for vet's sake
	until  int64              // Unix nanoseconds: handed out until then
}

func (d *sharedDeadline) context() context.Context {
	now := time.Now().UnixNano()
	if w := d.current.Load(); w != nil && now < w.until {
		return w.ctx
	}
	// The context is never cancelled early: its timer ends it, and keeps
	// at most timeout/deadlineWindow of them alive.
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout+deadlineWindow) //nolint:gosec // G118: kept in windowContext; the timer ends it
	w := &windowContext{ctx: ctx, cancel: cancel, until: now + int64(deadlineWindow)}
	d.current.Store(w)
	return ctx
}
