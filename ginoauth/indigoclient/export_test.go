package indigoclient

import (
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
