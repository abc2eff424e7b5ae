// Package lease holds a storage lock while its holder works: on a store
// with storage.RenewableLocker, with a short lease renewed every third of
// it, so that a holder that crashes blocks the lock for seconds; on a
// plain storage.Locker, with one lease as long as the longest hold.
//
// The holder works under Held.Bind's context, which ends a margin before
// the lease could lapse unrenewed (renewals failing, or the lease lost to
// another holder). So the holder's own deadline is always shorter than
// the time its lease can go unrenewed, and a holder that is alive stops
// before anyone else can take the lock. What this cannot cover is a
// holder that is paused (SIGSTOP, a long GC or VM pause) past its lease:
// it resumes not knowing its lease lapsed, as with any lease.
package lease

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
)

// ErrExpiring is the cause of a Held context that ended because the lease
// could lapse before a renewal confirmed it (storage failing), or because
// the holder held it for Policy.Max.
var ErrExpiring = errors.New("lease: the lock's lease may lapse before it is renewed")

// Policy is how long a lock is leased.
type Policy struct {
	// TTL is the lease on a storage.RenewableLocker: renewed every third
	// of it while the holder works, so a crashed holder blocks the lock
	// for at most TTL. The holder's context ends TTL/6 before the lease
	// could lapse (its margin).
	TTL time.Duration
	// Max is the longest a holder may hold the lock: renewals stop after
	// it, and it is the lease on a plain storage.Locker (which cannot be
	// renewed), as before renewable leases.
	Max time.Duration
}

// margin is how long before the lease could lapse the holder's context
// ends: time for its cancellation to stop the work in flight.
func (p Policy) margin() time.Duration { return p.TTL / 6 }

// Held is a lock held by this process.
type Held struct {
	ctx    context.Context // ends when the holder must stop
	cancel context.CancelCauseFunc
	unlock storage.Unlock
	ttl    time.Duration // how long the lease may last after the last renewal
	stop   chan struct{}
	once   sync.Once
	done   chan struct{} // closed when the renewer has returned
}

// Take waits, as ctx allows, for the lock name on l and holds it until
// Unlock: renewed when l is a storage.RenewableLocker (and p.TTL is
// shorter than p.Max), leased for p.Max otherwise.
func Take(ctx context.Context, l storage.Locker, name string, p Policy) (*Held, error) {
	rl, ok := l.(storage.RenewableLocker)
	if !ok || p.TTL <= 0 || p.TTL >= p.Max {
		start := time.Now()
		unlock, err := l.Lock(ctx, name, p.Max)
		if err != nil {
			return nil, err
		}
		h := newHeld(unlock, p.Max)
		h.expireAt(start.Add(p.Max - p.margin()))
		return h, nil
	}
	start := time.Now()
	token, unlock, err := rl.LockRenewable(ctx, name, p.TTL)
	if err != nil {
		return nil, err
	}
	// The lease began after start, but how long after is unknown when the
	// lock was waited for: confirm it with a renewal from now.
	if time.Since(start) > p.TTL/3 {
		start = time.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.TTL-p.margin())
		err := rl.Renew(rctx, name, token, p.TTL)
		cancel()
		if err != nil {
			_ = unlock(context.WithoutCancel(ctx))
			return nil, storage.Wrap("renew", err)
		}
	}
	h := newHeld(unlock, p.TTL)
	// Renewals outlive the caller's ctx (a wait for the lock): the holder
	// works detached from its request, and Unlock stops them.
	go h.renew(rl, name, token, p, start) //nolint:gosec // see above
	return h, nil
}

// Local wraps the release of a lock of this process (no lease): its
// context never ends by itself.
func Local(unlock storage.Unlock) *Held {
	h := newHeld(unlock, 0)
	close(h.done)
	return h
}

func newHeld(unlock storage.Unlock, ttl time.Duration) *Held {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Held{ctx: ctx, cancel: cancel, unlock: unlock, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
}

// expireAt ends the holder's context at t (a lease that is not renewed).
func (h *Held) expireAt(t time.Time) {
	timer := time.AfterFunc(time.Until(t), func() { h.cancel(ErrExpiring) })
	go func() {
		defer close(h.done)
		<-h.stop
		timer.Stop()
	}()
}

// renew renews the lease every third of p.TTL, and ends the holder's
// context when a renewal says the lease was lost, or when the lease could
// lapse before another renewal confirms it. confirmed is a moment no later
// than the start of the lease's current term.
func (h *Held) renew(rl storage.RenewableLocker, name, token string, p Policy, confirmed time.Time) {
	defer close(h.done)
	every, retry := p.TTL/3, p.TTL/12
	deadline := confirmed.Add(p.TTL - p.margin())
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	tick := time.NewTimer(time.Until(confirmed.Add(every)))
	defer tick.Stop()
	until := confirmed.Add(p.Max) // no renewal makes the lease outlast this
	for {
		select {
		case <-h.stop:
			return
		case <-expire.C:
			h.cancel(ErrExpiring)
			return
		case <-tick.C:
		}
		sent := time.Now()
		if sent.Add(p.TTL).After(until) {
			continue // held for Max: the context ends with this term
		}
		rctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := rl.Renew(rctx, name, token, p.TTL)
		cancel()
		switch {
		case err == nil:
			deadline = sent.Add(p.TTL - p.margin())
			expire.Reset(time.Until(deadline))
			tick.Reset(every)
		case errors.Is(err, storage.ErrLeaseLost):
			h.cancel(storage.ErrLeaseLost)
			return
		default:
			tick.Reset(retry) // a blip: try again before the deadline
		}
	}
}

// Context ends when the holder must stop working under the lock: a margin
// before its lease could lapse, or when it was lost. Its cause
// (context.Cause) is ErrExpiring or storage.ErrLeaseLost.
func (h *Held) Context() context.Context { return h.ctx }

// Bind returns a context derived from parent that also ends when Context
// does, with the same cause.
func (h *Held) Bind(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.AfterFunc(h.ctx, func() { cancel(context.Cause(h.ctx)) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// TTL is how long the lease may last after Stop, at most (0 for a lock of
// this process): a failed release can be retried until then.
func (h *Held) TTL() time.Duration { return h.ttl }

// ErrReleased is the cause of a Held context that ended because its
// holder stopped (Stop or Unlock).
var ErrReleased = errors.New("lease: released")

// Stop stops renewing the lease and ends Context; the lock stays held
// until it lapses or Unlock releases it.
func (h *Held) Stop() {
	h.once.Do(func() {
		close(h.stop)
		h.cancel(ErrReleased)
	})
}

// Unlock stops renewing and releases the lock (see storage.Unlock). It can
// be called again after a failure.
func (h *Held) Unlock(ctx context.Context) error {
	h.Stop()
	return h.unlock(ctx)
}

// Wait waits until the renewer has stopped (after Stop or Unlock), so tests
// can check that nothing is left running.
func (h *Held) Wait() { <-h.done }
