package indigoclient_test

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/auth/oauth"
	"go.uber.org/goleak"

	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
	"github.com/gin-atproto/oauth-sessions/stores/memstore"
)

// A Client with default options starts no goroutine that outlives Close.
// (indigo's default directory starts two cache janitors that can never be
// stopped; the Client must not create it.)
func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := indigoclient.New(oauth.NewLocalhostConfig("http://127.0.0.1/oauth/callback", []string{"atproto"}), memstore.New(), indigoclient.Options{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("Close twice:", err)
	}
}

// Close ends the background save of rescued tokens (after a last attempt).
func TestCloseEndsBackgroundWork(t *testing.T) {
	r := newRig(t)
	a := r.app(testdb.All()[1].New(t))
	indigoclient.SetSaveBudget(a.Client.Client, 100*time.Millisecond)
	b, _ := r.login(a)
	a.Store.Fail(apptest.OpSet, "oauth:sess:", -1)
	if resp := b.PostForm("/api/refresh", nil); resp.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.Status, resp.Body)
	}
	// The save's retry runs in a goroutine of its own, which may not have
	// been scheduled yet.
	for deadline := time.Now().Add(5 * time.Second); !clientGoroutines(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("expected the background save of the rotated tokens to be running")
		}
	}
	if err := a.Client.Close(); err != nil {
		t.Fatal(err)
	}
	if clientGoroutines() {
		t.Fatal("a background goroutine of the client outlived Close")
	}
}

// clientGoroutines reports whether a goroutine runs code of this package.
func clientGoroutines() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Contains(string(buf), "indigoclient.(*Client).rescue")
}
