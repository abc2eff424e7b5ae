package storage

import (
	"context"
	"time"
)

// Counter is an optional Store capability: counters that expire, shared by
// every process that uses the same store. The library counts login starts
// and callbacks per client address with it (see ginoauth.RateLimits), so
// that several app instances enforce one limit between them; without it,
// each instance counts on its own.
//
// Incr adds by to the counter named key and returns the counter's new
// value. The contract, which the storagetest package checks:
//
//   - Atomic across processes: concurrent Incr calls on one key, through
//     any number of handles on the store, never lose an increment, and each
//     returns a different value (no read-then-write).
//   - A counter that does not exist (never incremented, or expired) starts
//     at 0 and is created by the Incr, which returns by and makes it expire
//     ttl from now. Later increments add to it and do NOT extend or change
//     that expiry: a counter is a fixed window that opens at its first
//     increment. Once expired it is invisible at once (whether or not a
//     cleanup has run): the next Incr starts it again from 0 with a new
//     ttl.
//   - by must be at least 1 and ttl positive; anything else is an error and
//     changes nothing. Counters never exceed what int64 holds in practice,
//     and stores need not handle overflow.
//   - Keys follow the key rules (ValidateKey); an invalid key is an error.
//     A key used as a counter must not also be used with Set, Get, Take or
//     Delete: a store may keep counters with its entries or apart from them,
//     so what one sees of the other is undefined.
//   - Errors are system failures, as for Store; ctx cancellation is
//     honoured.
type Counter interface {
	Incr(ctx context.Context, key string, by int64, ttl time.Duration) (int64, error)
}
