package postgresstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// TestFirstRequestAfterRestart: the database drops every connection (a
// restart, as a proxy in between sees it) and is back at once. The next
// operation of each kind succeeds: none is sent on a pooled connection
// that died meanwhile. Take and Lock matter most, as the store may not
// retry them (the statement might have run); only the pool's check of
// idle connections saves them. Without it each failed here with
// "unexpected EOF".
func TestFirstRequestAfterRestart(t *testing.T) {
	s, proxy := testdb.PostgresThrough(t)
	st := s.(*gormstore.Store)
	ctx := context.Background()
	ops := map[string]func() error{
		"set": func() error { return st.Set(ctx, "k", []byte("v"), time.Hour) },
		"get": func() error { _, err := st.Get(ctx, "k"); return err },
		"take": func() error {
			if err := st.Set(ctx, "once", []byte("v"), time.Hour); err != nil {
				return err
			}
			proxy.Cut() // between the Set and the Take
			_, err := st.Take(ctx, "once")
			return err
		},
		"lock": func() error {
			unlock, err := st.Lock(ctx, "refresh", time.Minute)
			if err == nil {
				err = unlock(ctx)
			}
			return err
		},
		"delete":     func() error { return st.Delete(ctx, "k") },
		"add-member": func() error { return st.AddMember(ctx, "acct", "m", time.Hour) },
		"members":    func() error { _, err := st.Members(ctx, "acct"); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			// Several pooled connections, each used a moment ago (pgx
			// pings only connections idle for over a second).
			fillPool(t, st, 4)
			if err := st.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			proxy.Cut()
			if err := op(); err != nil {
				t.Fatalf("%s, the first after the database dropped its connections: %v", name, err)
			}
		})
	}
}

// fillPool makes the store's pool hold n idle connections.
func fillPool(t *testing.T, s *gormstore.Store, n int) {
	t.Helper()
	sqlDB, err := s.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := sqlDB.ExecContext(context.Background(), `SELECT pg_sleep(0.05)`); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if idle := sqlDB.Stats().Idle; idle < 2 {
		t.Fatalf("the pool holds %d idle connections, want several", idle)
	}
}

var _ storage.Locker = (*gormstore.Store)(nil)
