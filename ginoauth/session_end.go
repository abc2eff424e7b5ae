package ginoauth

import (
	"context"
	"time"
)

// revokeTimeout bounds a revocation, which may first wait for a token
// refresh in flight to finish.
const revokeTimeout = 45 * time.Second

// end ends one device session, and is the only way one ends: logout, end
// one, end everywhere, expiry, idle timeout, a refused refresh, a login
// that replaces it. In order: its records (so it is refused at once on
// every instance; a native app's rotated-out or successor token with it),
// its index entry, its tokens (in the background for a session found
// expired on the request path, whose request need not wait for the
// authorization server; not at all when the OAuth session is already
// gone), and one event with the reason. Only the record deletion can fail
// the call (a *storage.Error): the session is then still live.
func (ds *deviceSessions) end(ctx context.Context, hash string, rec *sessionRecord, reason EndReason) error {
	if err := ds.deleteRecords(ctx, hash); err != nil {
		return err
	}
	if rec.Previous != "" {
		_ = ds.deleteRecords(ctx, rec.Previous)
	}
	if rec.Successor != "" {
		if next, ok := ds.successorHash(hash, rec.Successor); ok {
			_ = ds.deleteRecords(ctx, next)
		}
	}
	_ = ds.unindex(ctx, rec.DID, hash)
	ds.seen.forget(hash)
	ds.extendedHere.forget(hash)
	ds.resealedHere.forget(hash)
	switch {
	case rec.OAuthSessionID == "":
	case reason == EndRevoked || reason == EndRefreshRefused || reason == EndGrantExpired:
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
