package ginoauth

import (
	"context"
	"errors"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// The per-account index of device sessions: a storage.Indexer set per
// account (acct:{did}) whose members are the hashes of the account's
// session ids, so that an account's sessions can be listed and ended on
// every instance. Without an Indexer the core keeps no index.

// ErrNoIndex is returned by the device operations when the Storage has no
// storage.Indexer: they need the per-account index of sessions.
var ErrNoIndex = errors.New("ginoauth: the Storage has no storage.Indexer (a per-account index of sessions), which listing and ending an account's sessions need")

// index adds a session to its account's index, to expire with it.
func (ds *deviceSessions) index(ctx context.Context, did, hash string, ttl time.Duration) error {
	if ds.ix == nil {
		return nil
	}
	ctx, cancel := ds.op(ctx)
	defer cancel()
	return storageFailed(ds.metrics, "index", ds.ix.AddMember(ctx, indexPrefix+did, hash, ttl))
}

func (ds *deviceSessions) unindex(ctx context.Context, did, hash string) error {
	if ds.ix == nil || did == "" {
		return nil
	}
	ctx, cancel := ds.op(ctx)
	defer cancel()
	return storageFailed(ds.metrics, "index", ds.ix.RemoveMember(ctx, indexPrefix+did, hash))
}

// list returns the live sessions of did (hashes and records, in the same
// order), dropping from the index any member whose session has ended.
func (ds *deviceSessions) list(ctx context.Context, did string) ([]string, []sessionRecord, error) {
	if ds.ix == nil {
		return nil, nil, ErrNoIndex
	}
	octx, cancel := ds.op(ctx)
	members, err := ds.ix.Members(octx, indexPrefix+did)
	cancel()
	if err != nil {
		return nil, nil, storageFailed(ds.metrics, "index", err)
	}
	var hashes []string
	var recs []sessionRecord
	now := ds.now()
	for _, h := range members {
		var rec sessionRecord
		switch err := ds.get(ctx, h, &rec); {
		case errors.Is(err, storage.ErrNotFound):
			_ = ds.unindex(ctx, did, h) // ended; the index catches up
			continue
		case err != nil:
			return nil, nil, err
		}
		if rec.DID != did || !rec.live(now) {
			continue
		}
		if rec.Successor != "" && ds.successorStored(ctx, h, &rec) {
			continue // a native app's rotated-out token: its device is listed by its successor
		}
		hashes, recs = append(hashes, h), append(recs, rec)
	}
	return hashes, recs, nil
}

// successorStored reports whether the successor of the rotated-out record
// rec (under hash) is stored. A rotation whose successor could not be
// stored yet leaves its device listed by the old token; a storage failure
// counts as stored, so a device is never listed twice.
func (ds *deviceSessions) successorStored(ctx context.Context, hash string, rec *sessionRecord) bool {
	next, ok := ds.successorHash(hash, rec.Successor)
	if !ok {
		return false
	}
	var succ sessionRecord
	return !errors.Is(ds.get(ctx, next, &succ), storage.ErrNotFound)
}
