package gormstore_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// storeThroughProxy opens a store on a *gorm.DB of the app's own (plain
// gorm Postgres driver: no check of idle connections), whose connections
// go through a proxy, and fills its pool with n idle connections.
func storeThroughProxy(t *testing.T, n int) (*gormstore.Store, *testdb.Proxy) {
	t.Helper()
	u, err := url.Parse(testdb.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testdb.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	db, err := gorm.Open(postgres.Open(u.String()), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	sqlDB.SetMaxIdleConns(n)
	table := "rc_" + time.Now().Format("150405") + randSuffix()
	s, err := gormstore.New(db, gormstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.Resume()
		_ = db.Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error
		_ = s.Close()
	})
	// n connections at once, each used a moment before the cut (pgx pings
	// only connections idle for over a second).
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Exec(`SELECT pg_sleep(0.05)`).Error; err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if idle := sqlDB.Stats().Idle; idle != n {
		t.Fatalf("the pool holds %d idle connections, want %d", idle, n)
	}
	return s, proxy
}

func randSuffix() string {
	return time.Now().Format("000000000")[3:]
}

// TestIdempotentRetryAfterRestart: on a pool without a check of idle
// connections, every connection in it dies (the database restarted). The
// store's idempotent statements succeed at once, however many dead
// connections they meet; without the retry each failed with "unexpected
// EOF". Take is not retried (its DELETE ... RETURNING might have run):
// it fails, and the value stays for the next Take.
func TestIdempotentRetryAfterRestart(t *testing.T) {
	ctx := context.Background()
	ops := map[string]func(s *gormstore.Store) error{
		"set":           func(s *gormstore.Store) error { return s.Set(ctx, "k", []byte("new"), time.Hour) },
		"get":           func(s *gormstore.Store) error { _, err := s.Get(ctx, "k"); return err },
		"delete":        func(s *gormstore.Store) error { return s.Delete(ctx, "k") },
		"add-member":    func(s *gormstore.Store) error { return s.AddMember(ctx, "acct", "m2", time.Hour) },
		"remove-member": func(s *gormstore.Store) error { return s.RemoveMember(ctx, "acct", "m") },
		"members":       func(s *gormstore.Store) error { _, err := s.Members(ctx, "acct"); return err },
		"get-stale":     func(s *gormstore.Store) error { _, err := s.GetStale(ctx, "k"); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			s, proxy := storeThroughProxy(t, 4)
			if err := s.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := s.AddMember(ctx, "acct", "m", time.Hour); err != nil {
				t.Fatal(err)
			}
			proxy.Cut()
			if err := op(s); err != nil {
				t.Fatalf("%s, the first after the database dropped its connections: %v", name, err)
			}
		})
	}
	t.Run("take is not retried", func(t *testing.T) {
		s, proxy := storeThroughProxy(t, 1)
		if err := s.Set(ctx, "once", []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
		proxy.Cut()
		v, err := s.Take(ctx, "once")
		var se *storage.Error
		if err == nil {
			// database/sql may find the connection dead before sending
			// (driver.ErrBadConn) and retry by itself: also fine.
			t.Logf("the first Take succeeded: %q", v)
		} else if !errors.As(err, &se) || se.Op != "take" {
			t.Fatalf("Take on a dead connection: %v (%T); want a *storage.Error", err, err)
		}
		v2, err2 := s.Take(ctx, "once")
		if (err == nil) == (err2 == nil) {
			t.Fatalf("two Takes: %q, %v and %q, %v; want exactly one value", v, err, v2, err2)
		}
	})
}
