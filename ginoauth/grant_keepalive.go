package ginoauth

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// Keep-alive (Config.KeepAlive): a confidential client's grant dies when
// its refresh token goes unused for the authorization server's inactivity
// limit (three months on the reference server), even while the grant
// itself could live on (two years). Kept-alive grants are refreshed in the
// background keepAliveLead before that, whether or not anyone uses them.
//
// Grants are scheduled in a set per day (keepalive:{YYYY-MM-DD}, a
// storage.Indexer set) of the day they fall due, at their login and after
// every refresh; every keepAliveSweepEvery each instance looks at the days
// up to today and refreshes at most keepAliveBatch due grants. Each grant
// is handled under a lock of its own (the Storage's Locker across
// instances), and its limits are read again under it, so a grant is
// refreshed once however many instances sweep, and never when something
// else refreshed it meanwhile.

const (
	keepAlivePrefix = "keepalive:"
	// keepAliveLead is how long before its refresh token would die a grant
	// is refreshed: long enough for a day's bucket and a few missed sweeps.
	keepAliveLead = 14 * 24 * time.Hour
	// keepAliveSweepEvery is how often each instance sweeps.
	keepAliveSweepEvery = 10 * time.Minute
	// keepAliveBatch bounds the grants one sweep refreshes.
	keepAliveBatch = 100
	// keepAliveLookBack is how many days of buckets a sweep reads: grants
	// whose day passed while no instance ran are still found.
	keepAliveLookBack = 30
)

// scheduleKeepAlive puts the grant (did, oauthSessionID) in the bucket of
// the day it falls due. Only grants a refresh can extend are scheduled
// (refreshBy before endsAt): a public client's cannot be kept alive.
func (m *Manager) scheduleKeepAlive(ctx context.Context, did, oauthSessionID string, refreshBy, endsAt time.Time) {
	if !m.cfg.KeepAlive || m.sessions.ix == nil || oauthSessionID == "" || refreshBy.IsZero() || !refreshBy.Before(endsAt) {
		return
	}
	now := m.now()
	due := refreshBy.Add(-keepAliveLead)
	if due.Before(now) {
		due = now
	}
	ttl := due.Add(keepAliveLookBack * 24 * time.Hour).Sub(now)
	octx, cancel := m.op(ctx)
	defer cancel()
	if err := m.sessions.ix.AddMember(octx, keepAliveBucket(due), did+" "+oauthSessionID, ttl); err != nil {
		_ = storageFailed(m.metrics, "index", err)
		m.log.Warn("could not schedule a grant's keep-alive refresh", "did", did, "err", err)
	}
}

func keepAliveBucket(day time.Time) string {
	return keepAlivePrefix + day.UTC().Format(time.DateOnly)
}

// sweepKeepAlive refreshes up to keepAliveBatch grants that are due, and
// returns how many it refreshed.
func (m *Manager) sweepKeepAlive(ctx context.Context) int {
	ix := m.sessions.ix
	today := m.now().UTC().Truncate(24 * time.Hour)
	done, handled := 0, 0
	for d := keepAliveLookBack; d >= 0 && handled < keepAliveBatch; d-- {
		bucket := keepAliveBucket(today.Add(-time.Duration(d) * 24 * time.Hour))
		octx, cancel := m.op(ctx)
		members, err := ix.Members(octx, bucket)
		cancel()
		if err != nil {
			_ = storageFailed(m.metrics, "index", err)
			m.log.Warn("keep-alive sweep could not read its schedule", "err", err)
			return done
		}
		for _, member := range members {
			if handled >= keepAliveBatch {
				break
			}
			handled++
			if m.keepAlive(ctx, bucket, member) {
				done++
			}
		}
	}
	return done
}

// keepAlive handles one scheduled grant and reports whether it refreshed
// it. The bucket's entry is removed once the grant is refreshed (its
// refresh schedules the next one), found refreshed by someone else, or
// gone; a refresh that failed on the network stays for the next sweep.
func (m *Manager) keepAlive(ctx context.Context, bucket, member string) bool {
	did, id, ok := strings.Cut(member, " ")
	if !ok {
		m.unschedule(ctx, bucket, member)
		return false
	}
	unlock, locked := m.lockGrant(ctx, member)
	if !locked {
		return false // another instance has it
	}
	defer unlock()
	outcome, refreshed := m.keepAliveGrant(ctx, did, id)
	if r, ok := m.metrics.(interface{ KeepAliveRan(outcome string) }); ok {
		r.KeepAliveRan(outcome)
	}
	if outcome != "network" && outcome != "storage" {
		m.unschedule(ctx, bucket, member)
	}
	return refreshed
}

// keepAliveGrant refreshes the grant if it is still due, and names the
// outcome: "refreshed", "not_due" (something else refreshed it), "gone",
// "refused" (the server ended it), "network" or "storage".
func (m *Manager) keepAliveGrant(ctx context.Context, did, id string) (outcome string, refreshed bool) {
	limiter := m.sessions.limiter
	if limiter == nil {
		return "gone", false
	}
	octx, cancel := m.op(ctx)
	refreshBy, endsAt, err := limiter.GrantLimits(octx, did, id)
	cancel()
	switch {
	case errors.Is(err, oauthclient.ErrSessionGone):
		return "gone", false
	case err != nil:
		return "storage", false
	case refreshBy.Sub(m.now()) > keepAliveLead+24*time.Hour:
		m.scheduleKeepAlive(ctx, did, id, refreshBy, endsAt) // refreshed meanwhile: keep its schedule
		return "not_due", false
	}
	sess, err := m.client.Resume(ctx, did, id)
	if errors.Is(err, oauthclient.ErrSessionGone) {
		return "gone", false
	}
	if err != nil {
		return "storage", false
	}
	r, ok := sess.(oauthclient.Refresher)
	if !ok {
		return "gone", false // the client cannot refresh on demand: nothing to keep alive with
	}
	switch err := r.RefreshTokens(ctx); {
	case err == nil:
		return "refreshed", true
	case errors.Is(err, oauthclient.ErrSessionGone):
		if refreshBy.After(m.now()) && (endsAt.IsZero() || endsAt.After(m.now())) && goneReason(err, EndRevokedAtServer) == EndRevokedAtServer {
			m.sessions.emit(EventGrantRevoked, EndRevokedAtServer, &sessionRecord{DID: did, OAuthSessionID: id}, "")
		}
		m.endGrant(ctx, did, id, goneReason(err, EndRefreshRefused))
		return "refused", false
	case isStorageErr(err):
		return "storage", false
	default:
		m.log.Warn("keep-alive refresh failed; retrying at the next sweep", "did", did, "err", err)
		return "network", false
	}
}

// endGrant ends the device sessions that use a grant the server ended,
// and forgets it as the background grant. A refused refresh
// (EndRefreshRefused) ends each with the reason its grant's limits give
// (refusedReason).
func (m *Manager) endGrant(ctx context.Context, did, oauthSessionID string, reason EndReason) {
	m.dropBackground(ctx, did, oauthSessionID, false)
	hashes, recs, err := m.sessions.list(ctx, did)
	if err != nil {
		return
	}
	for i := range recs {
		if recs[i].OAuthSessionID == oauthSessionID {
			r := reason
			if r == EndRefreshRefused {
				r = refusedReason(&recs[i], m.now())
			}
			_ = m.sessions.end(ctx, hashes[i], &recs[i], r)
		}
	}
}

func (m *Manager) unschedule(ctx context.Context, bucket, member string) {
	octx, cancel := m.op(ctx)
	defer cancel()
	_ = m.sessions.ix.RemoveMember(octx, bucket, member)
}

// lockGrant takes the keep-alive lock of one grant without waiting: the
// Storage's Locker when it has one (across instances), this process's
// otherwise.
func (m *Manager) lockGrant(ctx context.Context, member string) (unlock func(), ok bool) {
	if l, isLocker := m.store.(storage.Locker); isLocker {
		lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		u, err := l.Lock(lctx, keepAlivePrefix+member, 5*time.Minute)
		if err != nil {
			return nil, false
		}
		return func() {
			uctx, cancel := m.op(context.Background())
			defer cancel()
			_ = u(uctx)
		}, true
	}
	m.keepAliveMu.Lock()
	defer m.keepAliveMu.Unlock()
	if m.keepAliveBusy == nil {
		m.keepAliveBusy = map[string]bool{}
	}
	if m.keepAliveBusy[member] {
		return nil, false
	}
	m.keepAliveBusy[member] = true
	return func() {
		m.keepAliveMu.Lock()
		delete(m.keepAliveBusy, member)
		m.keepAliveMu.Unlock()
	}, true
}
