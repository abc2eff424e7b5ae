package indigoclient_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// The refresh lock's renewed lease, with real stores and two instances.
// The lease is shortened to shortLease so the tests wait little.
const shortLease = 1200 * time.Millisecond

// pairs are the shared stores the lease tests run on: each one two
// handles, as two instances have.
func pairs() map[string]func(testing.TB) (storage.Store, storage.Store) {
	return map[string]func(testing.TB) (storage.Store, storage.Store){
		"sqlite": testdb.SQLitePair, "postgres": testdb.PostgresPair, "redis": testdb.RedisPair,
	}
}

// serverSession is what the server knows of the session whose tokens a
// stores.
func (r *rig) serverSession(a *apptest.App, id string) ginoauthtest.SessionInfo {
	r.t.Helper()
	data, err := r.stored(a, id)
	if err != nil {
		r.t.Fatal(err)
	}
	info, ok := r.as.Session(data.RefreshToken)
	if !ok {
		r.t.Fatal("the server does not know the stored refresh token")
	}
	return info
}

// A refresh that takes several times its lease (the token request is
// slow) keeps the lock through renewals: another instance that wants to
// refresh the same session waits, then uses the first one's tokens. No
// second refresh with the spent refresh token, which the server would
// take for a replay and answer by ending the login. (Failed, with a
// replay detected, while the lease was not renewed.)
func TestSlowRefreshKeepsItsLease(t *testing.T) {
	for name, pair := range pairs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			s1, s2 := pair(t)
			one, two := r.app(s1), r.app(s2)
			indigoclient.SetRefreshLease(one.Client.Client, shortLease)
			indigoclient.SetRefreshLease(two.Client.Client, shortLease)
			b, id := r.login(one)
			b2 := two.NewBrowser()
			b2.SetCookie(b.Cookie("sid"))

			arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
			first := make(chan int, 1)
			go func() { first <- b.PostForm("/api/refresh", nil).Status }()
			<-arrived // one holds the lock; the server rotated; the answer is slow
			second := make(chan int, 1)
			go func() { second <- b2.PostForm("/api/refresh", nil).Status }()
			time.Sleep(3 * shortLease) // the holder works for three leases
			release()
			if st := <-first; st != http.StatusOK {
				t.Fatalf("the slow refresh: %d", st)
			}
			if st := <-second; st != http.StatusOK {
				t.Fatalf("the other instance's refresh: %d (%+v)", st, r.as.Stats())
			}
			r.alive(two, id)
			if s := r.serverSession(two, id); s.Refreshes != 1 {
				t.Fatalf("%d refreshes at the server, want 1: the other instance refreshed too", s.Refreshes)
			}
		})
	}
}

// Storage fails at the worst moment of a refresh: the server has rotated
// the tokens, and neither their save nor the renewal of the refresh
// lock's lease gets through. The holder's work ends before its lease can
// lapse (no instance could take the lock while the holder still worked),
// and the rotated tokens are not lost: the rescue keeps them in memory
// and saves them once storage answers, and the other instance goes on
// with them.
func TestRenewalFailsMidRefresh(t *testing.T) {
	for name, pair := range pairs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			s1, s2 := pair(t)
			logs := &apptest.LogBuffer{}
			one := r.app(s1, func(o *apptest.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
			two := r.app(s2)
			indigoclient.SetRefreshLease(one.Client.Client, shortLease)
			indigoclient.SetSaveBudget(one.Client.Client, 300*time.Millisecond)
			b, id := r.login(one)
			lockName := indigoclient.RefreshLockName(r.did.String(), id)

			// Another instance tries for the lock all along, and notes
			// when it first gets it.
			var freeAt atomic.Int64
			ctx, stopProbe := context.WithCancel(context.Background())
			probed := make(chan struct{})
			go func() {
				defer close(probed)
				for ctx.Err() == nil {
					pctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
					unlock, err := s2.(storage.Locker).Lock(pctx, lockName, time.Second)
					cancel()
					if err == nil {
						freeAt.CompareAndSwap(0, time.Now().UnixNano())
						_ = unlock(context.Background())
					} else {
						freeAt.Store(0) // held again (not by us)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			defer func() { stopProbe(); <-probed }()

			arrived, release := r.gate.Hold(apptest.IsRefreshGrant, true)
			refreshed := make(chan int, 1)
			go func() { refreshed <- b.PostForm("/api/refresh", nil).Status }()
			<-arrived // one holds the lock; the server has rotated the tokens
			heldSince := time.Now()
			restoreRenew := one.Store.Fail(apptest.OpRenew, "oauth-refresh:", -1)
			restoreSave := one.Store.Fail(apptest.OpSet, "oauth:sess:", -1)
			release()
			if st := <-refreshed; st != http.StatusOK {
				t.Fatalf("the refresh whose save and renewals fail: %d", st)
			}
			// The holder stops: its lease could not be kept.
			deadline := time.Now().Add(10 * shortLease)
			for !strings.Contains(logs.String(), "lease could not be kept") {
				if time.Now().After(deadline) {
					t.Fatalf("the holder never stopped while its lease could not be renewed:\n%s", logs)
				}
				time.Sleep(5 * time.Millisecond)
			}
			stopped := time.Now()
			if at := freeAt.Load(); at != 0 && time.Unix(0, at).After(heldSince) && time.Unix(0, at).Before(stopped) {
				t.Fatalf("another instance took the lock %v before the holder stopped", stopped.Sub(time.Unix(0, at)))
			}
			if st := b.Get("/api/pds-session").Status; st != http.StatusOK {
				t.Fatalf("the holder's instance must go on with the tokens it could not save: %d", st)
			}

			restoreRenew()
			restoreSave()
			saved := time.Now().Add(20 * time.Second)
			for {
				data, err := r.stored(one, id)
				if err == nil && r.as.TokenActive(data.RefreshToken) {
					break
				}
				if time.Now().After(saved) {
					t.Fatal("the rotated tokens were never saved after storage recovered")
				}
				time.Sleep(20 * time.Millisecond)
			}
			r.as.ExpireAccessTokens()
			b2 := two.NewBrowser()
			b2.SetCookie(b.Cookie("sid"))
			if st := b2.Get("/api/pds-session").Status; st != http.StatusOK {
				t.Fatalf("the other instance after the rescue: %d (%+v)", st, r.as.Stats())
			}
			r.alive(two, id)
		})
	}
}
