package storage

import (
	"context"
	"time"
)

// Swapper is an optional Store capability: an atomic compare-and-swap of one
// key's value. The library uses it to extend a session that is in use (a
// sliding lifetime) without ever bringing back a session that was ended or
// changed meanwhile, on any instance.
//
// Swap replaces key's value with new, and its TTL with ttl (as Set does),
// only if key currently holds a live value equal to old, byte for byte; it
// reports whether it did. ttl < 0 is an error, as for Set. A key that was never set, was deleted, has
// expired or holds anything else is left alone and gives false with a nil
// error. The comparison and the write are one atomic step across every
// process sharing the store: a Delete or Set that lands first makes the
// Swap report false, and one that lands after it wins as usual. Failures
// are system failures, as for Store; key rules are those of ValidateKey (an
// invalid key gives false or an error, never a write).
type Swapper interface {
	Swap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error)
}
