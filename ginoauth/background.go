package ginoauth

import (
	"sync"
	"time"
)

// background runs work that must not be tied to a request (and must not
// outlive the Manager): Close waits for it.
type background struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{} // closed by close; made on first use
}

// stopping is closed when the Manager closes: waiting work should end.
func (b *background) stopping() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop == nil {
		b.stop = make(chan struct{})
	}
	return b.stop
}

// run starts f in a goroutine, or runs it at once after close.
func (b *background) run(f func()) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		f()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		f()
	}()
}

func (b *background) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		if b.stop == nil {
			b.stop = make(chan struct{})
		}
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// every runs f every period, in the background, until the Manager closes:
// the loop of the Manager's periodic work (keep-alive sweeps, liveness
// checks). f runs in the loop's goroutine, so runs never overlap.
func (m *Manager) every(period time.Duration, f func()) {
	stop := m.bg.stopping()
	m.bg.run(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f()
			}
		}
	})
}
