package lease

import "sync"

// ReleaseSignal tells a store's waiting Lock calls that this process
// released a lock, so they try again at once instead of at their next
// poll. The zero value is ready.
type ReleaseSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel closed at the next Released. Take it before an
// attempt, so that a release in between is not missed.
func (r *ReleaseSignal) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

// Released wakes every Wait channel handed out so far.
func (r *ReleaseSignal) Released() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
}
