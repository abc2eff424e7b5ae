package indigoclient

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/lease"
)

// The refresh lock's timing. The holder finishes (refresh, then save with
// retries) within refreshBudget + saveBudget, inside refreshLockTTL, so the
// lease cannot lapse under a working holder and let a second refresh start.
//
// On a storage.RenewableLocker the lease is refreshLeaseTTL, renewed every
// third of it while the holder works (internal/lease), so a holder that
// crashes blocks the session's refreshes, on every instance, for at most
// refreshLeaseTTL. The holder's work (re-reading the session, the token
// request) runs on a context that ends before the lease could lapse
// unrenewed; the save of rotated tokens does not (it only ever replaces
// the tokens the refresh spent), and a save that fails is rescued.
const (
	// refreshLockTTL is the longest hold, and the lease on a store
	// without renewals: a crashed holder blocks others this long there.
	refreshLockTTL = 30 * time.Second
	// refreshLeaseTTL is the renewed lease: a crashed holder blocks
	// others this long.
	refreshLeaseTTL = 6 * time.Second
	// refreshBudget bounds re-reading the session and the token request.
	refreshBudget = 15 * time.Second
	// saveBudget bounds the save of rotated tokens, retries included.
	saveBudget = 8 * time.Second
	// lockWait bounds the wait for the lock: longer than a lease, so that
	// a lease left by a crashed holder is waited out.
	lockWait = refreshLockTTL + 5*time.Second
)

// refreshLease is the refresh lock's lease policy.
var refreshLease = lease.Policy{TTL: refreshLeaseTTL, Max: refreshLockTTL}

// lockWithin takes the named refresh lock, waiting at most lockWait.
func (c *Client) lockWithin(ctx context.Context, name string) (*lease.Held, error) {
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	if l, ok := c.store.storage.(storage.Locker); ok {
		return lease.Take(ctx, l, name, c.refreshLease)
	}
	unlock, err := c.locks.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	return lease.Local(unlock), nil
}

// watchLease logs when the lease of a refresh lock ends before its holder
// released it: storage failed to renew it, or it was lost.
func (c *Client) watchLease(h *lease.Held, did syntax.DID, id string) {
	context.AfterFunc(h.Context(), func() {
		if cause := context.Cause(h.Context()); !errors.Is(cause, lease.ErrReleased) {
			c.log.Warn("the refresh lock's lease could not be kept; token work under it stops", "did", did, "session", shortHash(id), "err", cause)
		}
	})
}

// release releases a refresh lock. If that fails (storage trouble), it
// keeps trying in the background until it works or the lease has lapsed
// by itself, so other instances do not wait out the whole lease.
func (c *Client) release(h *lease.Held) {
	lapse := time.Now().Add(h.TTL())
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), c.store.timeout)
		defer cancel()
		return h.Unlock(ctx)
	}
	err := try()
	if err == nil {
		return
	}
	c.log.Warn("releasing the refresh lock failed; retrying", "err", err)
	c.bg.run(func(stop <-chan struct{}) {
		retry(stop, lapse, func() bool { return try() == nil })
	})
}

// saveRotated saves the tokens a refresh produced, retrying storage
// failures for up to saveBudget.
func (c *Client) saveRotated(ctx context.Context, data oauth.ClientSessionData, spent string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.saveBudget)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		err := c.store.saveRotated(ctx, data, spent)
		var se *storage.Error
		if !errors.As(err, &se) {
			return err // saved, gone, stale, or not a storage failure
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// rescue keeps rotated tokens whose save failed: in memory for this
// process's requests, and saved in the background as soon as storage
// answers, holding the refresh lock until then (renewed, for at most
// refreshLockTTL in all). kid is the client key the session is bound to.
func (c *Client) rescue(data oauth.ClientSessionData, kid, spent string, held *lease.Held) {
	did, id := data.AccountDID, data.SessionID
	c.rescued.put(data, kid)
	c.log.Error("could not save rotated OAuth tokens; keeping them in memory and retrying in the background", "did", did, "session", shortHash(id))
	c.bg.run(func(stop <-chan struct{}) {
		defer c.release(held)
		saved := retry(stop, time.Time{}, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), c.store.timeout)
			defer cancel()
			switch err := c.store.saveRotated(ctx, data, spent); {
			case err == nil:
				c.log.Info("saved rotated OAuth tokens after a storage failure", "did", did, "session", shortHash(id))
			case errors.Is(err, storage.ErrNotFound):
				// Ended meanwhile: nobody may hold the new tokens.
				c.log.Info("OAuth session ended before its rotated tokens could be saved; revoking them", "did", did, "session", shortHash(id))
				if cs, cerr := c.clientSession(data); cerr == nil {
					var key *ClientKey
					if c.keys != nil {
						key, cerr = c.keyFor(kid, true)
					}
					if cerr == nil {
						_ = c.revokeSession(ctx, cs, key)
					}
					c.unindexKey(ctx, kid, sessionMember(did, id))
				}
			case errors.Is(err, errStaleTokens):
				c.log.Warn("rotated OAuth tokens were superseded before they could be saved", "did", did, "session", shortHash(id))
			default:
				return false
			}
			return true
		})
		if !saved {
			c.log.Error("rotated OAuth tokens could not be saved before the client closed; the login will end at its next refresh", "did", did, "session", shortHash(id))
		}
		c.rescued.dropIf(data)
	})
}

// retry calls try with a growing pause until it reports success, until
// the deadline (if not zero), or until stop is closed, after which it makes
// one last attempt. It reports whether try succeeded.
func retry(stop <-chan struct{}, deadline time.Time, try func() bool) bool {
	delay := 100 * time.Millisecond
	for {
		if try() {
			return true
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(delay)
		select {
		case <-stop:
			t.Stop()
			return try()
		case <-t.C:
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// background runs the Client's retries and lets Close stop and wait for
// them.
type background struct {
	mu     sync.Mutex
	stop   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

func (b *background) init() { b.stop = make(chan struct{}) }

// run starts f in a goroutine; after close it runs f at once, with stop
// already closed, so f makes its last attempt before run returns.
func (b *background) run(f func(stop <-chan struct{})) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		f(b.stop)
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		f(b.stop)
	}()
}

func (b *background) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// rescuedTokens are rotated tokens whose save is still pending: newer than
// the stored copy, so this process uses them first.
type rescuedTokens struct {
	mu sync.Mutex
	m  map[string]rescuedSession
}

// rescuedSession is a session's rotated tokens and its client key.
type rescuedSession struct {
	data oauth.ClientSessionData
	kid  string
}

func (r *rescuedTokens) put(d oauth.ClientSessionData, kid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]rescuedSession{}
	}
	r.m[sessionKey(d.AccountDID, d.SessionID)] = rescuedSession{d, kid}
}

func (r *rescuedTokens) get(did syntax.DID, id string) (oauth.ClientSessionData, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[sessionKey(did, id)]
	return e.data, e.kid, ok
}

func (r *rescuedTokens) drop(did syntax.DID, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, sessionKey(did, id))
}

// dropIf drops the pending copy if it still holds d's tokens.
func (r *rescuedTokens) dropIf(d oauth.ClientSessionData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := sessionKey(d.AccountDID, d.SessionID)
	if cur, ok := r.m[k]; ok && cur.data.RefreshToken == d.RefreshToken {
		delete(r.m, k)
	}
}
