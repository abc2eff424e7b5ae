package ginoauth_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb/pgreplica"
	"github.com/gin-atproto/oauth-sessions/stores/gormstore"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

// The session check reads from a streaming replica (storage.StaleReader),
// and a logout on one instance is not undone on another by the replica's
// lag beyond its bound, even while the replica stops replaying.
func TestSessionCheckOnAReplica(t *testing.T) {
	pair := pgreplica.Use(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "apptest_" + hex.EncodeToString(b[:])
	const bound = 300 * time.Millisecond
	open := func(skipMigration bool) *gormstore.Store {
		replica, err := postgresstore.ReplicaPool(pair.ReplicaDSN)
		if err != nil {
			t.Fatal(err)
		}
		s, err := postgresstore.Open(pair.PrimaryDSN, postgresstore.Options{
			Table: table, SkipMigration: skipMigration,
			Replica: &postgresstore.Replica{DB: replica, MaxStaleness: bound},
		})
		if err != nil {
			_ = replica.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s1 := open(false)
	s2 := open(true)
	t.Cleanup(func() {
		_ = s1.DB().Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error
	})
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	one := startApp(t, as, func(o *apptest.Options) { o.Storage = s1 })
	two := startApp(t, as, func(o *apptest.Options) { o.Storage = s2 })

	br := one.NewBrowser()
	br.Login("alice.test", "")
	sid := br.Cookie("sid").Value
	pair.WaitCaughtUp(t)
	// Checks on the second instance: answered by the replica once its lag
	// is known (a miss or unknown lag reads the primary).
	deadline := time.Now().Add(10 * time.Second)
	for s2.ReplicaStats().ReplicaReads == 0 {
		if r := two.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusOK {
			t.Fatalf("check on the second instance: %d %s", r.Status, r.Body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session check was answered by the replica: %+v", s2.ReplicaStats())
		}
		time.Sleep(20 * time.Millisecond)
	}

	pair.Pause(t) // the replica keeps the session from now on
	if r := br.PostForm("/api/logout", nil); r.Status != http.StatusOK {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	time.Sleep(bound + 100*time.Millisecond)
	if r := two.WithCookie(http.MethodGet, "/api/whoami", sid); r.Status != http.StatusUnauthorized {
		t.Fatalf("a logout more than the bound ago was undone by a lagging replica: %d %s", r.Status, r.Body)
	}
	if n, err := pair.Replica().Query(`SELECT 1 FROM "` + table + `" WHERE "key" LIKE 'sess:%'`); err == nil {
		found := n.Next()
		_ = n.Close()
		if !found {
			t.Fatal("the test proves nothing: the paused replica no longer holds the session")
		}
	}
}
