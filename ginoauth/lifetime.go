package ginoauth

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// A device session's lifetime slides: each use extends it by the kind's
// lifetime (Config.SessionTTL, Mobile.SessionTTL), up to the app's cap
// from the login (Config.MaxSessionAge) and never past its grant's limits
// (oauthclient.GrantLimiter: when the grant dies unless refreshed, and when
// it ends whatever happens). Extending is the session core's: at most once
// per extendEvery per session and instance, as one compare-and-swap of the
// record (storage.Swapper), so a session ended or changed meanwhile, on any
// instance, is never brought back or overwritten.

// fallbackMaxAge caps a login whose grant's limits are unknown (an OAuth
// client without oauthclient.GrantLimiter, or an authentication-only
// login) when Config.MaxSessionAge is not set: the shortest grant AT
// Protocol gives, a public client's.
const fallbackMaxAge = 14 * 24 * time.Hour

// unlimited is the lifetime of a kind whose SessionTTL is 0: only the app's
// cap and the grant's limits end it.
const unlimited = 100 * 365 * 24 * time.Hour

// window is the sliding lifetime a SessionTTL setting gives.
func window(sessionTTL time.Duration) time.Duration {
	if sessionTTL <= 0 {
		return unlimited
	}
	return sessionTTL
}

// extendEvery is how often a session of lifetime window may be extended:
// a tenth of it, at most an hour. A session in use thus always has at
// least nine tenths of its lifetime left, for one write an hour.
func extendEvery(window time.Duration) time.Duration {
	return min(window/10, time.Hour)
}

// expiry is when rec expires if it is extended at now: the earliest of now
// plus its kind's lifetime, the app's cap, and the grant's limits as rec
// knows them.
func (ds *deviceSessions) expiry(rec *sessionRecord, now time.Time) time.Time {
	exp := now.Add(ds.lifetime[rec.kind()])
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(exp) {
			exp = t
		}
	}
	switch {
	case ds.maxAge > 0:
		earlier(rec.CreatedAt.Add(ds.maxAge))
	case rec.GrantEndsAt.IsZero():
		earlier(rec.CreatedAt.Add(fallbackMaxAge))
	}
	earlier(rec.GrantRefreshBy)
	earlier(rec.GrantEndsAt)
	return exp
}

// cookieUntil is the latest rec can live without being used again (the
// grant's refreshes can extend it that far): its session cookie lasts as
// long, so that a session a background refresh kept alive can still be
// reached. The record's own expiry is what the server enforces.
func (ds *deviceSessions) cookieUntil(rec *sessionRecord) time.Time {
	used := rec.Extended
	if used.IsZero() {
		used = rec.CreatedAt
	}
	last := *rec
	last.GrantRefreshBy = time.Time{} // a refresh can move it, up to the grant's end
	return ds.expiry(&last, used)
}

// recordTTL is how long the record of a session expiring at expires is
// kept from now: a day past its expiry, so that a request then still finds
// it and the session ends with its reason and event, rather than as
// unknown.
func recordTTL(expires, now time.Time) time.Duration {
	return expires.Add(cookieSealGrace).Sub(now)
}

// extendDue reports whether the session under hash should be extended now,
// and if so notes that this instance is doing it (so that concurrent
// requests for one session make one write).
func (ds *deviceSessions) extendDue(hash string, rec *sessionRecord, now time.Time) bool {
	if ds.swapper == nil || now.Sub(rec.Extended) < extendEvery(ds.lifetime[rec.kind()]) {
		return false
	}
	return ds.extendedHere.dueWithin(hash, now, extendEvery(ds.lifetime[rec.kind()]))
}

// extend moves rec's expiry to what it is if used now, with the grant's
// limits read afresh, and stores it with one compare-and-swap; rec is
// updated when it was stored. A session whose OAuth session is gone ends
// here, and code says why (the only non-empty answer). Storage trouble
// leaves the session as it was: it is extended at a later use.
func (ds *deviceSessions) extend(ctx context.Context, hash string, rec *sessionRecord, now time.Time) (extended bool, code ErrorCode) {
	next := *rec
	if ds.limiter != nil && rec.OAuthSessionID != "" {
		refreshBy, endsAt, err := ds.limits(ctx, rec)
		switch {
		case errors.Is(err, oauthclient.ErrSessionGone):
			reason, code := goneReason(err, EndRevoked), CodeOAuthSessionGone
			if reason == EndRevoked && !now.Before(rec.GrantRefreshBy) && !rec.GrantRefreshBy.IsZero() {
				reason, code = EndGrantExpired, CodeGrantExpired
			}
			ended := *rec // a copy: rec stays on its caller's stack
			if err := ds.end(ctx, hash, &ended, reason); err != nil {
				return false, "" // still live; the next use tries again
			}
			return false, code
		case err != nil:
			ds.log.Debug("grant limits unavailable; session not extended", "session", shortRef(hash), "err", err)
			return false, ""
		}
		next.GrantRefreshBy, next.GrantEndsAt = refreshBy, endsAt
	}
	next.Extended = now
	next.ExpiresAt = ds.expiry(&next, now)
	if !next.ExpiresAt.After(rec.ExpiresAt) && next.GrantRefreshBy.Equal(rec.GrantRefreshBy) {
		return false, "" // capped: nothing to gain from a write
	}
	if !now.Before(next.ExpiresAt) {
		return false, "" // the grant ended meanwhile: the next read ends the session
	}
	sctx, cancel := ds.op(ctx)
	defer cancel()
	ok, err := ds.swapper.Swap(sctx, sessionKeyPrefix+hash, encodeRecord(rec), encodeRecord(&next), recordTTL(next.ExpiresAt, now))
	if err != nil {
		_ = storageFailed(ds.metrics, "swap", err)
		ds.log.Debug("session not extended", "session", shortRef(hash), "err", err)
		return false, ""
	}
	if !ok {
		ds.cache.drop(hash) // changed or ended elsewhere: read it afresh next time
		return false, ""
	}
	ds.cache.put(hash, &next, now)
	if ds.ix != nil {
		// The index entry expires with the session; a failure only lets it
		// lapse early from the device list, which prunes itself.
		_ = ds.index(ctx, rec.DID, hash, recordTTL(next.ExpiresAt, now))
	}
	*rec = next
	return true, ""
}

// limits asks the OAuth client for the grant's limits, within the storage
// deadline.
func (ds *deviceSessions) limits(ctx context.Context, rec *sessionRecord) (refreshBy, endsAt time.Time, err error) {
	ctx, cancel := ds.op(ctx)
	defer cancel()
	return ds.limiter.GrantLimits(ctx, rec.DID, rec.OAuthSessionID)
}

// followGrant brings the device sessions of a grant up to date after its
// tokens were refreshed: their expiry moves with the grant's new limits
// (from their last use, not from now: a background refresh is not a use)
// and they record the scopes granted now, so that every instance answers
// User.Allows from them. Each record is one compare-and-swap, tried again
// from a fresh read when the record changed meanwhile.
//
// It returns the grant's device session (hash "" when none was found), for
// the refresh's event when forEvent is set (the sessions are read for it
// alone when they cannot be updated).
func (ds *deviceSessions) followGrant(ctx context.Context, r oauthclient.Refresh, forEvent bool) (hash string, rec sessionRecord) {
	rec = sessionRecord{DID: r.DID, OAuthSessionID: r.SessionID}
	if ds.ix == nil || (ds.swapper == nil && !forEvent) {
		return "", rec // no way to find the grant's device sessions, or no need
	}
	hashes, recs, err := ds.list(ctx, r.DID)
	if err != nil {
		ds.log.Debug("device sessions not updated after a refresh", "did", r.DID, "err", err)
		return "", rec
	}
	for i := range recs {
		if recs[i].OAuthSessionID != r.SessionID {
			continue
		}
		if hash == "" || recs[i].GraceUntil.IsZero() {
			hash, rec = hashes[i], recs[i] // a rotated-out native token's successor names the device
		}
		if ds.swapper != nil { // else no safe way to update them
			ds.follow(ctx, hashes[i], recs[i], r)
		}
	}
	return hash, rec
}

// follow applies a refresh to the device session under hash (rec as last
// read): one compare-and-swap, tried again from a fresh read when the
// record changed meanwhile. It reports whether the record is up to date.
func (ds *deviceSessions) follow(ctx context.Context, hash string, rec sessionRecord, r oauthclient.Refresh) bool {
	for attempt := 0; attempt < 3; attempt++ {
		if !rec.GraceUntil.IsZero() {
			return true // a rotated-out native token in its grace window: its successor follows
		}
		if ds.applyRefresh(ctx, hash, &rec, r) {
			return true
		}
		var fresh sessionRecord
		if err := ds.get(ctx, hash, &fresh); err != nil {
			return errors.Is(err, storage.ErrNotFound) // ended meanwhile, or storage trouble
		}
		rec = fresh
	}
	return false
}

// followScopes records scopes, the OAuth session's as of its last
// refresh, in the device session under hash when they differ from its
// record's: for a refresh whose update this instance never made (another
// process refreshed, or the update failed). It reports whether the record
// is up to date.
func (ds *deviceSessions) followScopes(ctx context.Context, hash string, scopes []string) bool {
	if ds.swapper == nil {
		return true // no safe way to update: refreshes' own updates are skipped too
	}
	var rec sessionRecord
	switch err := ds.get(ctx, hash, &rec); {
	case errors.Is(err, storage.ErrNotFound):
		return true
	case err != nil:
		return false
	case slices.Equal(rec.Scopes, scopes):
		ds.cache.drop(hash) // up to date in storage: read it afresh here too
		return true
	}
	return ds.follow(ctx, hash, rec, oauthclient.Refresh{DID: rec.DID, SessionID: rec.OAuthSessionID, Scopes: scopes})
}

// applyRefresh stores rec with the refresh's scopes and limits; it reports
// false only when rec changed in storage meanwhile (try again).
func (ds *deviceSessions) applyRefresh(ctx context.Context, hash string, rec *sessionRecord, r oauthclient.Refresh) bool {
	next := *rec
	if !r.RefreshBy.IsZero() {
		next.GrantRefreshBy, next.GrantEndsAt = r.RefreshBy, r.EndsAt
	}
	if len(r.Scopes) > 0 {
		next.Scopes = slices.Clone(r.Scopes)
	}
	used := rec.Extended
	if used.IsZero() {
		used = rec.CreatedAt
	}
	next.ExpiresAt = ds.expiry(&next, used)
	now := ds.now()
	if !now.Before(next.ExpiresAt) {
		return true // unused too long already: its next read ends it
	}
	if next.ExpiresAt.Equal(rec.ExpiresAt) && next.GrantRefreshBy.Equal(rec.GrantRefreshBy) &&
		next.GrantEndsAt.Equal(rec.GrantEndsAt) && slices.Equal(next.Scopes, rec.Scopes) {
		return true // nothing changed (a public client's refresh): no write
	}
	ttl := recordTTL(next.ExpiresAt, now)
	sctx, cancel := ds.op(ctx)
	ok, err := ds.swapper.Swap(sctx, sessionKeyPrefix+hash, encodeRecord(rec), encodeRecord(&next), ttl)
	cancel()
	ds.cache.drop(hash)
	if err != nil {
		return true // storage trouble: its next use catches up
	}
	if ok {
		_ = ds.index(ctx, rec.DID, hash, ttl)
	}
	return ok
}
