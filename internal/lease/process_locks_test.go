package lease

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One holder per name; a waiter that gives up leaves nothing behind, and
// the lock is free again after an Unlock (called twice, harmlessly).
func TestProcessLocks(t *testing.T) {
	var l ProcessLocks
	ctx := context.Background()
	unlock, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Lock(ctx, "b") // another name is not blocked
	if err != nil {
		t.Fatal(err)
	}
	_ = other(ctx)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second holder of a: %v; want the context's error", err)
	}
	_ = unlock(ctx)
	_ = unlock(ctx) // a second call must not free someone else's hold
	again, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	go func() {
		if u, err := l.Lock(ctx, "a"); err == nil {
			close(held)
			_ = u(ctx)
		}
	}()
	select {
	case <-held:
		t.Fatal("a was held twice")
	case <-time.After(20 * time.Millisecond):
	}
	_ = again(ctx)
	<-held
	for l.Len() != 0 {
		time.Sleep(time.Millisecond) // the goroutine's unlock
	}
}

// Released wakes the channels handed out before it, not the ones after.
func TestReleaseSignal(t *testing.T) {
	var r ReleaseSignal
	before := r.Wait()
	r.Released()
	select {
	case <-before:
	default:
		t.Fatal("a waiter from before the release was not woken")
	}
	after := r.Wait()
	select {
	case <-after:
		t.Fatal("a waiter from after the release was woken")
	default:
	}
	r.Released()
	<-after
}
