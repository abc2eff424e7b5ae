package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// honoursDeadlines reports whether go-redis bounds rdb's commands by their
// context's deadline, which it does only with ContextTimeoutEnabled. The
// interfaces match go-redis's clients and anything embedding one; a client
// that says nothing is assumed not to.
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case interface{ Options() *redis.Options }: // *redis.Client, failover clients
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	case interface{ Options() *redis.ClusterOptions }:
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	case interface{ Options() *redis.RingOptions }:
		o := c.Options()
		return o != nil && o.ContextTimeoutEnabled
	}
	return false
}

// result is what a call returns, through a channel when it runs detached.
type result[T any] struct {
	v   T
	err error
}

// call runs fn, which sends commands on s.rdb with ctx, and makes sure it
// returns by the end of ctx. On a client that honours deadlines (or with a
// ctx that never ends) that is fn itself. Otherwise fn runs in a goroutine
// of its own: the caller gets ctx's error at ctx's end, and the goroutine
// finishes when the client gives up by its own ReadTimeout/WriteTimeout or
// Redis answers. Its result is then dropped: an operation whose caller got
// an error may still have happened, as with any timeout.
//
// On a cluster client, a failure also makes the client reload the
// cluster's layout (at most every 200ms; go-redis does it in the
// background). go-redis does that by itself only on a MOVED reply, which a
// dead primary never sends: without it, the slots of a primary that
// crashed keep failing until ClusterStateReloadInterval (60s by default)
// has passed, long after a replica took over.
func call[T any](s *Store, ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	if s.reload != nil {
		inner := fn
		fn = func(ctx context.Context) (T, error) {
			v, err := inner(ctx)
			if err != nil && !errors.Is(err, redis.Nil) {
				s.reload()
			}
			return v, err
		}
	}
	if !s.detach || ctx.Done() == nil {
		v, err := fn(ctx)
		return v, deadlineErr(ctx, err)
	}
	done := make(chan result[T], 1) // buffered: the goroutine never blocks on an abandoned call
	go func() {
		v, err := fn(ctx)
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.v, deadlineErr(ctx, r.err)
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// deadlineErr says that a command failed because its context ended (which
// go-redis reports as a network timeout), so that callers can tell.
func deadlineErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// callErr is call for a command without a value.
func callErr(s *Store, ctx context.Context, fn func(context.Context) error) error {
	_, err := call(s, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}
