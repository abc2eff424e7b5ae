package ginoauth

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The liveness check (Config.LivenessCheckEvery). A grant the user revokes
// at their PDS ("connected apps") would otherwise be noticed only when its
// access token expires and the refresh is refused: up to an hour later on
// the reference server. So each instance checks the sessions it served
// lately, off the request path, with one authenticated call the PDS
// answers cheaply (com.atproto.server.getSession): a revoked grant answers
// 401, the client's refresh is refused, and the device session ends with
// EndRevokedAtServer.
//
// "Lately" is the last-seen note (session_core.go): a session this
// instance noted seen within livenessActiveFor. Time is cut into windows
// of LivenessCheckEvery (each session's shifted by a phase of its own, so
// that checks spread over the period); each instance looks livenessTicks
// times a window,
// and a session is checked once per window across instances: the first
// instance to count it in storage.Counter (alive:{hash}:{window}) checks
// it, the others skip it. A revocation is so noticed within one window and
// one tick (plus SessionCacheTTL on other instances). A session that comes
// back after an idle hour is active again from its first request here (it
// is noted seen), so the next tick checks it; not that request itself,
// whose own PDS call would race the check's refresh.

const (
	livenessPrefix = "alive:"
	// defaultLivenessCheckEvery: a revoked grant is noticed within about
	// six minutes (a twelfth of the reference server's access token
	// lifetime) for 12 PDS calls per active session an hour.
	defaultLivenessCheckEvery = 5 * time.Minute
	// minLivenessCheckEvery keeps the check from turning into load on
	// the users' PDSes.
	minLivenessCheckEvery = time.Minute
	// livenessActiveFor is how long after its last-seen note a session
	// counts as active here: the note is written hourly, so a session in
	// use is always active, and one left alone stops being checked within
	// the hour.
	livenessActiveFor = lastSeenEvery
	// livenessTicks is how many times a window each instance looks.
	livenessTicks = 5
	// livenessBatch bounds the checks one instance starts per tick;
	// livenessParallel how many run at once.
	livenessBatch    = 2000
	livenessParallel = 8
	// livenessCallTimeout bounds one check (a refresh may come with it).
	livenessCallTimeout = 20 * time.Second
)

// livenessState is an instance's bookkeeping: the window it last claimed
// (or saw claimed) for each active session.
type livenessState struct {
	mu      sync.Mutex
	claimed map[string]int64
}

// livenessEvery is the configured period, 0 when the check is off.
func (m *Manager) livenessEvery() time.Duration {
	if m.cfg.LivenessCheckEvery < 0 || m.cfg.AuthenticationOnly {
		return 0
	}
	return m.cfg.LivenessCheckEvery
}

// startLivenessChecks runs the sweeps until the Manager closes.
func (m *Manager) startLivenessChecks() {
	every := m.livenessEvery()
	if every <= 0 {
		return
	}
	// Checks in flight end when the Manager closes, so Close does not
	// wait for a slow PDS.
	ctx, cancel := context.WithCancel(context.Background())
	stop := m.bg.stopping()
	m.bg.run(func() { <-stop; cancel() })
	m.every(every/livenessTicks, func() { m.sweepLiveness(ctx) })
}

// livenessWindow is the index of the window now falls in for the session
// under hash. Each session's windows are shifted by a phase of its own
// (from its hash, so the same on every instance): the checks of many
// sessions spread over the period instead of all falling due at once.
func (m *Manager) livenessWindow(hash string, now time.Time) int64 {
	every := int64(m.livenessEvery())
	h := fnv.New64a()
	_, _ = h.Write([]byte(hash))
	phase := int64(h.Sum64() % uint64(every)) //nolint:gosec // less than every, an int64
	return (now.UnixNano() + phase) / every
}

// sweepLiveness checks this instance's active sessions not yet checked in
// the current window (by any instance), and returns how many it checked.
func (m *Manager) sweepLiveness(ctx context.Context) int {
	if m.livenessEvery() <= 0 {
		return 0
	}
	now := m.now()
	active := m.sessions.seen.since(now.Add(-livenessActiveFor))
	m.liveness.mu.Lock()
	kept := make(map[string]int64, len(active)) // forget sessions no longer active
	for _, h := range active {
		if w, ok := m.liveness.claimed[h]; ok {
			kept[h] = w
		}
	}
	m.liveness.claimed = kept
	m.liveness.mu.Unlock()

	sem := make(chan struct{}, livenessParallel)
	var wg sync.WaitGroup
	var checked atomic.Int32
	started := 0
	for _, hash := range active {
		if started >= livenessBatch {
			break // the rest at the next tick, still in this window
		}
		if !m.claimLiveness(ctx, hash, now) {
			continue
		}
		started++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if m.checkLiveness(ctx, hash) != "" {
				checked.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(checked.Load())
}

// claimLiveness reports whether this instance is the one to check hash in
// the window of now: the first to count it, across instances when the
// Storage is a storage.Counter, in this process otherwise.
func (m *Manager) claimLiveness(ctx context.Context, hash string, now time.Time) bool {
	w := m.livenessWindow(hash, now)
	m.liveness.mu.Lock()
	if m.liveness.claimed == nil {
		m.liveness.claimed = map[string]int64{}
	}
	if m.liveness.claimed[hash] == w {
		m.liveness.mu.Unlock()
		return false
	}
	m.liveness.claimed[hash] = w
	m.liveness.mu.Unlock()
	c, ok := m.store.(storage.Counter)
	if !ok {
		return true
	}
	octx, cancel := m.op(ctx)
	defer cancel()
	n, err := c.Incr(octx, livenessPrefix+hash+":"+strconv.FormatInt(w, 10), 1, m.livenessEvery())
	if err != nil {
		_ = storageFailed(m.metrics, "incr", err)
		m.liveness.mu.Lock()
		delete(m.liveness.claimed, hash) // try again at the next tick
		m.liveness.mu.Unlock()
		return false
	}
	return n == 1
}

// checkLiveness checks one device session's grant with the PDS and ends
// the session when the server ended the grant. It names the outcome: "live",
// "ended", "gone" (no such session any more), "unknown" (the PDS or the
// storage could not say; the next window tries again), or "" when there was
// nothing to check (an authentication-only login, a rotated-out token).
func (m *Manager) checkLiveness(ctx context.Context, hash string) string {
	outcome := m.checkGrant(ctx, hash)
	if r, ok := m.metrics.(interface{ LivenessChecked(outcome string) }); ok && outcome != "" {
		r.LivenessChecked(outcome)
	}
	return outcome
}

// checkGrant is checkLiveness without the count.
func (m *Manager) checkGrant(ctx context.Context, hash string) string {
	ctx, cancel := context.WithTimeout(ctx, livenessCallTimeout)
	defer cancel()
	var rec sessionRecord
	switch err := m.sessions.get(ctx, hash, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		m.sessions.seen.forget(hash)
		return "gone"
	case err != nil:
		return "unknown"
	}
	if rec.OAuthSessionID == "" || !rec.GraceUntil.IsZero() {
		return ""
	}
	sess, err := m.client.Resume(ctx, rec.DID, rec.OAuthSessionID)
	switch {
	case errors.Is(err, oauthclient.ErrSessionGone):
		m.endGrantOf(ctx, hash, &rec, goneReason(err, EndRevoked))
		return "ended"
	case err != nil:
		return "unknown"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sess.HostURL()+"/xrpc/com.atproto.server.getSession", nil)
	if err != nil {
		return "unknown"
	}
	resp, err := sess.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return "live"
		}
		m.log.Debug("liveness check inconclusive", "did", rec.DID, "session", shortRef(hash), "status", resp.StatusCode)
		return "unknown"
	}
	if !errors.Is(err, oauthclient.ErrSessionGone) {
		m.log.Debug("liveness check failed; tried again next window", "did", rec.DID, "session", shortRef(hash), "err", err)
		return "unknown"
	}
	m.endGrantOf(ctx, hash, &rec, goneReason(err, refusedReason(&rec, m.now())))
	return "ended"
}

// endGrantOf ends the device session under hash (rec) whose grant the
// server ended, and every other device session of that grant (there are
// several only when the grant is also the background one), reporting a
// revocation at the server once (EventGrantRevoked, after the session's
// EventSessionEnded).
func (m *Manager) endGrantOf(ctx context.Context, hash string, rec *sessionRecord, reason EndReason) {
	if err := m.sessions.end(ctx, hash, rec, reason); err != nil {
		m.log.Warn("ending a session whose grant ended failed; tried again next window", "session", shortRef(hash), "err", err)
		m.liveness.mu.Lock()
		delete(m.liveness.claimed, hash)
		m.liveness.mu.Unlock()
		return
	}
	m.log.Info("session ended", "reason", string(reason), "session", shortRef(hash))
	if reason == EndRevokedAtServer {
		m.sessions.emit(EventGrantRevoked, reason, rec, hash)
	}
	if m.sessions.ix != nil {
		m.endGrant(ctx, rec.DID, rec.OAuthSessionID, reason)
	}
}

// refusedReason is why a device session ends when the authorization server
// refused its grant's refresh: past the grant's known limits the grant
// expired; before them the server ended it (a revocation); with no known
// limits, the library cannot tell.
func refusedReason(rec *sessionRecord, now time.Time) EndReason {
	switch {
	case rec.GrantRefreshBy.IsZero() && rec.GrantEndsAt.IsZero():
		return EndRefreshRefused
	case !rec.GrantRefreshBy.IsZero() && !now.Before(rec.GrantRefreshBy),
		!rec.GrantEndsAt.IsZero() && !now.Before(rec.GrantEndsAt):
		return EndGrantExpired
	}
	return EndRevokedAtServer
}

// since lists the sessions noted within the tracker after cutoff.
func (st *seenTracker) since(cutoff time.Time) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.seen))
	for h, t := range st.seen {
		if t.After(cutoff) {
			out = append(out, h)
		}
	}
	return out
}
