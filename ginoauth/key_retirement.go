package ginoauth

import (
	"context"
	"errors"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// This file ends the sessions of a retired client key. A confidential
// client that rotates its keys (indigoclient with a KeySet) lists the OAuth
// sessions still bound to a key it has retired (oauthclient.KeyRetirement);
// the Manager ends each one's device session through the session core, with
// EndKeyRetired, which revokes its tokens (signed with the retired key,
// which may still sign those) and emits one event. It does so when it
// starts, so that deploying a configuration with a retired key ends its
// sessions at once, and then every retiredKeySweepEvery. A session used in
// between ends at that use (the client's Resume or refresh reports
// oauthclient.ErrKeyRetired).

const (
	// retiredKeySweepEvery is how often each instance looks for sessions
	// of retired keys. Without retired keys a look costs no storage access.
	retiredKeySweepEvery = time.Minute
	// retiredKeySweepBudget bounds one sweep; what is left waits for the
	// next one.
	retiredKeySweepBudget = 90 * time.Second
	// retiredKeySweepLock keeps instances that start together from ending
	// the same sessions twice (and emitting their events twice).
	retiredKeySweepLock = "ginoauth-retired-key-sweep"
)

// goneReason is the end reason for a login whose OAuth session is gone:
// EndKeyRetired when its client key was retired, else def.
func goneReason(err error, def EndReason) EndReason {
	if errors.Is(err, oauthclient.ErrKeyRetired) {
		return EndKeyRetired
	}
	return def
}

// startRetiredKeySweeps runs endRetiredKeySessions now and then every
// retiredKeySweepEvery, until the Manager closes, when the OAuth client can
// retire keys.
func (m *Manager) startRetiredKeySweeps() {
	kr, ok := m.client.(oauthclient.KeyRetirement)
	if !ok {
		return
	}
	stop := m.bg.stopping()
	m.bg.run(func() {
		t := time.NewTicker(retiredKeySweepEvery)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), retiredKeySweepBudget)
			go func() { // Close must not wait for a slow sweep's budget
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			if _, err := m.endRetiredKeySessions(ctx, kr); err != nil {
				m.log.Warn("ending the sessions of a retired client key failed; retrying later", "err", err)
			}
			cancel()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
}

// endRetiredKeySessions ends every device session whose OAuth session is
// bound to a retired client key, and revokes the OAuth sessions that have
// no device session left, returning how many device sessions it ended.
func (m *Manager) endRetiredKeySessions(ctx context.Context, kr oauthclient.KeyRetirement) (int, error) {
	refs, err := kr.SessionsOfRetiredKeys(ctx)
	if err != nil || len(refs) == 0 {
		return 0, err
	}
	if l, ok := m.store.(storage.Locker); ok {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		unlock, err := l.Lock(lctx, retiredKeySweepLock, 2*retiredKeySweepBudget)
		cancel()
		if err != nil {
			return 0, nil // another instance is sweeping
		}
		defer func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.StorageTimeout)
			defer cancel()
			_ = unlock(uctx)
		}()
		// Read again under the lock: a sweep that just finished elsewhere
		// has ended (and unlisted) what the first read saw.
		if refs, err = kr.SessionsOfRetiredKeys(ctx); err != nil || len(refs) == 0 {
			return 0, err
		}
	}
	byDID := map[string]map[string]bool{}
	for _, r := range refs {
		if byDID[r.DID] == nil {
			byDID[r.DID] = map[string]bool{}
		}
		byDID[r.DID][r.SessionID] = true
	}
	ended := 0
	for did, ids := range byDID {
		if err := ctx.Err(); err != nil {
			return ended, err
		}
		hashes, recs, err := m.sessions.list(ctx, did)
		if err != nil && !errors.Is(err, ErrNoIndex) {
			return ended, err
		}
		for i := range recs {
			id := recs[i].OAuthSessionID
			if !ids[id] {
				continue
			}
			// One end per OAuth session: it also ends the other record of
			// a native app's rotated token pair.
			delete(ids, id)
			if err := m.sessions.end(ctx, hashes[i], &recs[i], EndKeyRetired); err != nil {
				return ended, err
			}
			ended++
		}
		for id := range ids {
			// No live device session (expired, or never made): revoke and
			// forget the OAuth session itself.
			m.revoke(ctx, did, id, "")
		}
	}
	if ended > 0 {
		m.log.Info("ended the sessions of a retired client key", "sessions", ended)
	}
	return ended, nil
}
