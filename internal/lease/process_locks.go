package lease

import (
	"context"
	"sync"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// ProcessLocks are named locks of this process that honour ctx, for a
// Storage without a storage.Locker (one process only). The zero value is
// ready. Entries go when nobody holds or waits for them.
type ProcessLocks struct {
	mu      sync.Mutex
	entries map[string]*processLock
}

type processLock struct {
	ch    chan struct{}
	users int // holders and waiters
}

// Lock waits for the lock called name, or until ctx ends. The returned
// Unlock may be called more than once.
func (l *ProcessLocks) Lock(ctx context.Context, name string) (storage.Unlock, error) {
	l.mu.Lock()
	if l.entries == nil {
		l.entries = map[string]*processLock{}
	}
	e, ok := l.entries[name]
	if !ok {
		e = &processLock{ch: make(chan struct{}, 1)}
		l.entries[name] = e
	}
	e.users++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if e.users--; e.users == 0 {
			delete(l.entries, name)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func(context.Context) error {
			once.Do(func() { <-e.ch; done() })
			return nil
		}, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// Len is the number of names held or waited for (for tests: none left
// behind).
func (l *ProcessLocks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
