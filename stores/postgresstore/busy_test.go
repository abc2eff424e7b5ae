package postgresstore_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestPoolCheckUnderLoad: concurrent writes of large values, which make
// pgx read in the background while it writes (and leave that reader
// blocked on an idle connection's socket), followed by reuse of those
// connections. The check of idle connections must not wait on that
// reader: an earlier version did, and hung the next statement forever.
func TestPoolCheckUnderLoad(t *testing.T) {
	s := open(t, newTable(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	big := bytes.Repeat([]byte("v"), 256<<10)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				k := fmt.Sprint("big:", w, ":", i%4)
				if err := s.Set(ctx, k, big, time.Hour); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Get(ctx, k); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
