package postgresstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
)

// TestFirstRequestAfterRestart: the database drops every connection (a
// restart, as a proxy in between sees it) and is back at once. The next
// operation of each kind succeeds: none is sent on the pooled connection
// that died meanwhile. The pool has one connection, used a moment before
// (pgx pings only connections idle for over a second), with every
// statement already prepared on it. Take and Lock matter most, as the
// store does not retry them (the statement might have run); only the
// pool's check of idle connections saves them. Without it each operation
// failed here with "unexpected EOF" (and with gormstore's retry of
// idempotent statements, Take and Lock still did).
func TestFirstRequestAfterRestart(t *testing.T) {
	s, proxy := testdb.PostgresThrough(t)
	st := s.(*gormstore.Store)
	sqlDB, err := st.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	ctx := context.Background()
	ops := map[string]func() error{
		"set":  func() error { return st.Set(ctx, "k", []byte("v"), time.Hour) },
		"get":  func() error { _, err := st.Get(ctx, "k"); return err },
		"take": func() error { _, err := st.Take(ctx, "once"); return err },
		"lock": func() error {
			unlock, err := st.Lock(ctx, "refresh", time.Minute)
			if err == nil {
				err = unlock(ctx)
			}
			return err
		},
		"delete":        func() error { return st.Delete(ctx, "k") },
		"add-member":    func() error { return st.AddMember(ctx, "acct", "m", time.Hour) },
		"remove-member": func() error { return st.RemoveMember(ctx, "acct", "m") },
		"members":       func() error { _, err := st.Members(ctx, "acct"); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			if err := st.Set(ctx, "k", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := st.Set(ctx, "once", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Get(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Members(ctx, "acct"); err != nil {
				t.Fatal(err)
			}
			proxy.Cut()
			if err := op(); err != nil {
				t.Fatalf("%s, the first after the database dropped its connections: %v", name, err)
			}
		})
	}
}
