package ginoauth

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// revokeTimeout bounds a revocation, which may first wait for a token
// refresh in flight to finish.
const revokeTimeout = 45 * time.Second

// end ends one device session, and is the only way one ends: logout, end
// one, end everywhere, expiry, idle timeout, a refused refresh, a login
// that replaces it, a one-time code presented twice. It holds the device
// lock (session_lock.go), so it never interleaves with a rotation or a
// scope update of the same login on any instance. In order: the records
// linked to it (a native app's rotated-out predecessor or its successor,
// as storage has them now, which may be newer than rec), then its own
// record, so that a failure leaves the session live and the end can be
// retried, never a predecessor that could bring it back; its index
// entries; its tokens (in the background for a session found expired on
// the request path, whose request need not wait for the authorization
// server; not at all when the OAuth session is already gone); and one
// event with the reason. Only the lock and the record deletions can fail
// the call (a *storage.Error): the session is then still live.
func (ds *deviceSessions) end(ctx context.Context, hash string, rec *sessionRecord, reason EndReason) error {
	ctx, release, err := ds.lockDevice(ctx, rec)
	if err != nil {
		return err
	}
	defer release()
	return ds.endLocked(ctx, hash, rec, reason)
}

// endLocked is end for a caller that holds rec's device lock.
func (ds *deviceSessions) endLocked(ctx context.Context, hash string, rec *sessionRecord, reason EndReason) error {
	var stored sessionRecord
	already := false // ended before this call got the lock: its end was reported then
	switch err := ds.get(ctx, hash, &stored); {
	case errors.Is(err, storage.ErrNotFound):
		already = true
	case err != nil:
		return err
	}
	var linked []string
	for _, r := range []*sessionRecord{&stored, rec} {
		if r.Previous != "" {
			linked = append(linked, r.Previous)
		}
		if r.Successor != "" {
			if next, ok := ds.successorHash(hash, r.Successor); ok {
				linked = append(linked, next)
			}
		}
	}
	slices.Sort(linked)
	linked = slices.Compact(linked)
	for _, h := range linked {
		if err := ds.deleteRecords(ctx, h); err != nil {
			return err
		}
	}
	if err := ds.deleteRecords(ctx, hash); err != nil {
		return err
	}
	if !already {
		ds.noteEnded(ctx, hash, rec, reason) // back_to_login.go
	}
	for _, h := range append(linked, hash) {
		_ = ds.unindex(ctx, rec.DID, h)
		ds.seen.forget(h)
		ds.extendedHere.forget(h)
		ds.resealedHere.forget(h)
	}
	switch {
	case rec.OAuthSessionID == "":
	case reason == EndRevoked || reason == EndRefreshRefused || reason == EndRevokedAtServer || reason == EndGrantExpired:
		ds.forgetBackground(ctx, rec.DID, rec.OAuthSessionID) // the grant is gone
		if reason == EndGrantExpired {
			did, id := rec.DID, rec.OAuthSessionID // the client's copy is dead: delete it
			ds.bg.run(func() { ds.revoke(context.Background(), did, id, hash) })
		}
	case reason != EndEverywhere && ds.keptForBackground(ctx, rec):
		// Its grant is the account's background grant: it lives on.
	case reason == EndExpired || reason == EndIdle:
		did, id := rec.DID, rec.OAuthSessionID
		ds.bg.run(func() { ds.revoke(context.Background(), did, id, hash) })
	default:
		ds.revoke(ctx, rec.DID, rec.OAuthSessionID, hash)
	}
	if already {
		return nil
	}
	typ := EventSessionEnded
	if reason == EndLogout {
		typ = EventLogout
	}
	ds.emit(typ, reason, rec, hash)
	return nil
}

// revoke asks the OAuth client to revoke a login's tokens and forget its
// OAuth session, even if the browser goes away meanwhile. Failures are
// logged: the local session is gone either way. hash names the device
// session in logs ("" for a login that never got one).
func (m *Manager) revoke(ctx context.Context, did, oauthSessionID, hash string) {
	if oauthSessionID == "" {
		return // no OAuth session (authentication only): nothing to revoke
	}
	// The client may wait for a refresh in flight (under its lock) first.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if err := m.client.Revoke(ctx, did, oauthSessionID); err != nil {
		m.log.Warn("token revocation failed", "did", did, "session", shortRef(hash), "err", err)
	}
}

// shortRef is the part of a session hash that logs show.
func shortRef(hash string) string {
	if len(hash) < 8 {
		return "-"
	}
	return hash[:8]
}
