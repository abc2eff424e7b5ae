package indigoclient

import (
	"context"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Hooks for the package's external tests.

// SetSaveBudget shortens how long c retries the save of rotated tokens.
func SetSaveBudget(c *Client, d time.Duration) { c.saveBudget = d }

// SetRefreshLease shortens c's refresh-lock lease (renewed on stores that
// can) to ttl; the longest hold stays as it is.
func SetRefreshLease(c *Client, ttl time.Duration) { c.refreshLease.TTL = ttl }

// RefreshLockName is the name of a session's refresh lock.
func RefreshLockName(did, sessionID string) string {
	return refreshLockName(syntax.DID(did), sessionID)
}

// ForgetKeyUse drops what c remembers of its keys' use, so that its next
// JWKS reads the key index.
func ForgetKeyUse(c *Client) {
	c.keyUse.mu.Lock()
	defer c.keyUse.mu.Unlock()
	c.keyUse.seen = nil
}

// LockRefresh takes the session's refresh lock as a refresh does (renewed
// while held) and returns its release.
func LockRefresh(ctx context.Context, c *Client, did, sessionID string) (release func(), err error) {
	held, err := c.lockWithin(ctx, refreshLockName(syntax.DID(did), sessionID))
	if err != nil {
		return nil, err
	}
	return func() { c.release(held) }, nil
}

// RefreshLeaseTTL is the renewed lease of the refresh lock.
const RefreshLeaseTTL = refreshLeaseTTL
