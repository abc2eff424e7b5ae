package ginoauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Identity re-verification (Config.IdentityCheckInterval), with an OAuth
// client that has oauthclient.IdentityChecker. An account's handle, PDS and
// status change at the network's pace, not the app's: handles are changed,
// accounts move to another PDS, and are deactivated, taken down or
// deleted. Each logged-in account is checked again in the background:
//
//   - when one of its sessions is used, at most once per interval per
//     instance (one map lookup on the session check, which stays one storage
//     read), and at most once per interval-long window across instances
//     (the Storage's Counter counts the window's checks; without one, a
//     Locker lease of one interval that is never released);
//   - after a token refresh, under the same window;
//   - at once when a PDS call answers that the account is deactivated,
//     taken down or gone (AccountDeactivated, AccountTakedown,
//     AccountNotFound, RepoDeactivated, RepoTakendown, RepoNotFound).
//
// A check resolves the DID document afresh, verifies its handle both ways
// and asks the PDS it names for the account's status. A changed handle is
// written to the account's device session records (handle.invalid when it
// no longer verifies); a changed PDS is followed when its authorization
// server is the session's (oauthclient.IdentityChecker.FollowPDS, under the
// refresh lock) and otherwise ends the sessions with EndAccountMoved; a
// deactivated, taken down (or suspended) or deleted account's sessions end
// with their own reason, or, for deactivated and suspended accounts under
// Config.KeepDeactivatedSessions, are marked (User.AccountStatus).

const (
	// defaultIdentityCheckInterval is Config.IdentityCheckInterval's
	// default: how stale a handle or PDS may be at most while the account
	// uses the app.
	defaultIdentityCheckInterval = time.Hour
	// minIdentityCheckInterval bounds it below: the checks cost the PLC
	// directory and the PDS a request each.
	minIdentityCheckInterval = time.Minute
	// identityLeasePrefix names the lease of one account's check.
	identityLeasePrefix = "identity:"
	// identityCheckBudget bounds one check (resolution, status, updates).
	identityCheckBudget = time.Minute
)

// identityChecks is what the session core needs to start checks.
type identityChecks struct {
	every    time.Duration // 0: off
	here     seenTracker   // by DID: when this instance last started a check
	answered seenTracker   // by DID: when a PDS answer last started one here
	start    func(did string)
	// afterAnswer checks at once after a PDS answer about the account, and
	// reports whether its sessions ended; afterRefused the same after a
	// refused refresh (a takedown or a deletion revokes the tokens).
	afterAnswer, afterRefused func(ctx context.Context, did string) bool
}

// noteIdentity starts a background check of did's identity when this
// instance has not started one within the interval, counting from when it
// first saw the account (a login has just verified it; a restarted
// instance waits one interval). It is on the session check's path: one
// map lookup.
func (ds *deviceSessions) noteIdentity(did string, now time.Time) {
	if ds.identity.every <= 0 || !ds.identity.here.dueAfter(did, now, ds.identity.every) {
		return
	}
	ds.bg.run(func() { ds.identity.start(did) })
}

// startIdentityCheck is identityChecks.start: a check of did under the
// interval's lease.
func (m *Manager) startIdentityCheck(did string) {
	ctx, cancel := context.WithTimeout(context.Background(), identityCheckBudget)
	defer cancel()
	if !m.identityLease(ctx, did) {
		return // another instance checked it within the interval
	}
	m.checkIdentity(ctx, did)
}

// identityLease takes did's check lease for one interval, and reports
// whether this instance may check. The lease is never released: it is
// what spaces the checks.
func (m *Manager) identityLease(ctx context.Context, did string) bool {
	every := m.sessions.identity.every
	if c, ok := m.store.(storage.Counter); ok {
		// One check per interval-long window (on the Manager's clock).
		octx, cancel := m.op(ctx)
		defer cancel()
		period := m.now().UnixNano() / int64(every)
		n, err := c.Incr(octx, identityLeasePrefix+did+":"+strconv.FormatInt(period, 36), 1, 2*every)
		return err == nil && n == 1
	}
	if l, ok := m.store.(storage.Locker); ok {
		lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := l.Lock(lctx, identityLeasePrefix+did, every)
		return err == nil
	}
	return true // this instance's own spacing is all there is
}

// checkIdentity checks did's identity now and applies what changed. It
// reports whether the account's sessions were ended.
func (m *Manager) checkIdentity(ctx context.Context, did string) (ended bool) {
	ic, ok := m.client.(oauthclient.IdentityChecker)
	if !ok || m.sessions.ix == nil {
		return false
	}
	id, err := ic.CheckIdentity(ctx, did)
	if err != nil {
		m.log.Warn("identity check failed; trying again later", "did", did, "err", err)
		return false
	}
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		m.log.Warn("identity check could not list the account's sessions", "did", did, "err", err)
		return false
	}
	if reason, end := m.statusEnds(id.Status); end {
		m.endAccount(ctx, did, reason)
		return true
	}
	previousHandle, previousPDS := "", ""
	for _, rec := range recs {
		if rec.Handle != id.Handle && previousHandle == "" {
			previousHandle = rec.Handle
		}
	}
	if id.PDS != "" {
		var moved bool
		if previousPDS, moved = m.followPDS(ctx, ic, did, recs, id.PDS); moved {
			m.endAccount(ctx, did, EndAccountMoved)
			m.emitIdentity(did, id, previousHandle, previousPDS)
			return true
		}
	}
	status := "" // the mark: deactivated or suspended, kept (KeepDeactivatedSessions)
	if id.Status == oauthclient.StatusDeactivated || id.Status == oauthclient.StatusSuspended {
		status = id.Status
	}
	statusChanged := false
	for i := range recs {
		if recs[i].Handle == id.Handle && recs[i].AccountStatus == status {
			continue
		}
		statusChanged = statusChanged || recs[i].AccountStatus != status
		m.sessions.rewrite(ctx, hashes[i], recs[i], func(r *sessionRecord) { r.Handle, r.AccountStatus = id.Handle, status })
	}
	if previousHandle != "" || previousPDS != "" || statusChanged {
		m.emitIdentity(did, id, previousHandle, previousPDS)
	}
	return false
}

// statusEnds says whether an account status ends its sessions, and with
// which reason.
func (m *Manager) statusEnds(status string) (EndReason, bool) {
	switch status {
	case oauthclient.StatusDeleted:
		return EndAccountDeleted, true
	case oauthclient.StatusTakendown:
		return EndAccountTakenDown, true
	case oauthclient.StatusSuspended:
		return EndAccountTakenDown, !m.cfg.KeepDeactivatedSessions
	case oauthclient.StatusDeactivated:
		return EndAccountDeactivated, !m.cfg.KeepDeactivatedSessions
	}
	return "", false
}

// followPDS points every grant of the account (its device sessions' and
// the background one) at pds. It returns the PDS the grants used before
// when any moved ("" when none did), and whether the account moved out of
// their authorization server's reach.
func (m *Manager) followPDS(ctx context.Context, ic oauthclient.IdentityChecker, did string, recs []sessionRecord, pds string) (previous string, moved bool) {
	grants := map[string]bool{}
	for _, rec := range recs {
		if rec.OAuthSessionID != "" {
			grants[rec.OAuthSessionID] = true
		}
	}
	var bg backgroundGrant
	if m.cfg.BackgroundAccess && m.getJSON(ctx, backgroundPrefix+did, &bg) == nil {
		grants[bg.OAuthSessionID] = true
	}
	for id := range grants {
		sess, err := m.client.Resume(ctx, did, id)
		if err != nil {
			continue // gone or unreadable: its next use finds out
		}
		host := sess.HostURL()
		switch err := ic.FollowPDS(ctx, did, id, pds); {
		case errors.Is(err, oauthclient.ErrAccountMoved):
			m.log.Info("account moved to a PDS of another authorization server; ending its sessions", "did", did, "pds", pds)
			return host, true
		case err == nil && trimSlash(host) != trimSlash(pds):
			previous = host
		case err != nil && !errors.Is(err, oauthclient.ErrSessionGone):
			m.log.Warn("could not point a session at its account's new PDS; trying again later", "did", did, "err", err)
		}
	}
	return previous, false
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// endAccount ends every session of did and its background grant, for a
// reason of the account's (moved, deactivated, taken down, deleted).
func (m *Manager) endAccount(ctx context.Context, did string, reason EndReason) {
	if _, err := m.endSessionsOf(ctx, did, "", reason); err != nil {
		m.log.Warn("could not end every session of an account; trying again at its next check", "did", did, "reason", string(reason), "err", err)
	}
	m.dropBackground(ctx, did, "", true)
}

// emitIdentity sends EventIdentityChanged.
func (m *Manager) emitIdentity(did string, id oauthclient.Identity, previousHandle, previousPDS string) {
	m.log.Info("account identity changed", "did", did, "handle", id.Handle, "previous_handle", previousHandle, "pds", id.PDS, "previous_pds", previousPDS, "status", id.Status)
	m.hooks.emit(m, Event{Type: EventIdentityChanged, DID: did, Handle: id.Handle, PreviousHandle: previousHandle,
		PDS: id.PDS, PreviousPDS: previousPDS, AccountStatus: id.Status, Time: m.now()})
}

// rewrite stores the device session under hash (rec as last read) changed
// by change: one compare-and-swap, tried again from a fresh read when the
// record changed meanwhile (an extension, a refresh's scopes). Without a
// storage.Swapper it is a plain write under the device lock.
func (ds *deviceSessions) rewrite(ctx context.Context, hash string, rec sessionRecord, change func(*sessionRecord)) {
	for attempt := 0; attempt < 3; attempt++ {
		next := rec
		change(&next)
		now := ds.now()
		ttl := rec.ttl(now)
		if ttl <= 0 {
			return
		}
		if ds.swapper == nil {
			lctx, release, err := ds.lockDevice(ctx, &rec)
			if err != nil {
				return
			}
			var fresh sessionRecord
			if ds.get(lctx, hash, &fresh) == nil {
				next = fresh
				change(&next)
				_ = ds.put(lctx, hash, &next, fresh.ttl(now))
			}
			release()
			return
		}
		sctx, cancel := ds.op(ctx)
		ok, err := ds.swapper.Swap(sctx, sessionKeyPrefix+hash, encodeRecord(&rec), encodeRecord(&next), recordTTL(rec.ExpiresAt, now))
		cancel()
		ds.cache.drop(hash)
		if err != nil || ok {
			return
		}
		if err := ds.get(ctx, hash, &rec); err != nil {
			return
		}
	}
}

// accountAnswers are the XRPC errors with which a PDS says that the
// account cannot be used: the reference PDS answers an authenticated call
// of a deactivated account with 401 AccountDeactivated, of a taken down
// one with 401 AccountTakedown, of a deleted one with 403 AccountNotFound,
// and reads of such repositories with 400 RepoDeactivated, RepoTakendown
// or RepoNotFound.
var accountAnswers = map[string]bool{
	"AccountDeactivated": true, "AccountTakedown": true, "AccountNotFound": true,
	"RepoDeactivated": true, "RepoTakendown": true, "RepoSuspended": true,
}

// accountAnswer reports whether resp is one of accountAnswers about the
// session's own account, leaving resp's body readable as it was.
func accountAnswer(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
	default:
		return false
	}
	const maxPeek = 16 << 10
	peek, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	var body struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(peek, &body) == nil && accountAnswers[body.Error]
}

// errAccountEnded is the cause of the *SessionError a PDS call returns when
// its answer led to the account's sessions being ended.
var errAccountEnded = errors.New("ginoauth: the PDS says the account cannot be used; its sessions ended")

// endedBy looks at a PDS call's answer: when it says the account cannot be
// used and the check it starts ends the account's sessions, the answer is
// closed and the call's error is a *SessionError (CodeOAuthSessionGone,
// the reason in the event), as for a refused refresh.
func (ic *identityChecks) endedBy(ctx context.Context, resp *http.Response, did string) error {
	if ic.afterAnswer == nil || !accountAnswer(resp) || !ic.afterAnswer(ctx, did) {
		return nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return &SessionError{Code: CodeOAuthSessionGone, Err: errAccountEnded}
}

// checkAfterRefused checks did's identity at once after its refresh was
// refused, so that an account taken down or deleted (whose tokens the
// reference PDS deletes with it) ends with its own reason rather than
// refresh_refused. It reports whether the check ended the sessions.
func (m *Manager) checkAfterRefused(ctx context.Context, did string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), identityCheckBudget)
	defer cancel()
	return m.checkIdentity(ctx, did)
}

// checkAfterAnswer checks did's identity at once after its PDS answered
// that the account cannot be used, and reports whether its sessions ended.
// It runs on the call that got the answer (rare: an account in trouble), so
// that the call's caller sees the session ended.
func (m *Manager) checkAfterAnswer(ctx context.Context, did string) bool {
	if _, ok := m.client.(oauthclient.IdentityChecker); !ok || m.sessions.identity.every <= 0 ||
		!m.sessions.identity.answered.dueWithin(did, m.now(), minIdentityCheckInterval) {
		return false // a PDS repeating itself starts at most one check a minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), identityCheckBudget)
	defer cancel()
	return m.checkIdentity(ctx, did)
}
