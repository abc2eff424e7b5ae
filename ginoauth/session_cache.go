package ginoauth

import (
	"slices"
	"sync"
	"time"
)

// SessionCacheConfig turns on an in-process cache of session records, so
// that most session checks need no storage read at all. It is off by
// default. A session ended on this instance (logout, ended from another
// device through this instance, expiry found here) is dropped from the
// cache at once; one ended on another instance sharing the store can
// still be accepted here for up to TTL. Choose TTL as the longest time a
// logout elsewhere may take to reach every instance.
type SessionCacheConfig struct {
	// TTL is how long a cached record is used before it is read again;
	// 0 (the default) turns the cache off. At most 5 minutes.
	TTL time.Duration
	// MaxEntries bounds the cache; default 100,000 records (a few hundred
	// bytes each).
	MaxEntries int
}

// cachedRecord is a session record and when it was read.
type cachedRecord struct {
	rec  sessionRecord
	read time.Time
}

// recordCache is the Manager's session record cache; its zero value (TTL
// 0) caches nothing.
type recordCache struct {
	ttl time.Duration
	max int
	mu  sync.RWMutex
	m   map[string]*cachedRecord
}

func newRecordCache(c SessionCacheConfig) *recordCache {
	max := c.MaxEntries
	if max <= 0 {
		max = 100_000
	}
	return &recordCache{ttl: c.TTL, max: max, m: map[string]*cachedRecord{}}
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
