package indigoclient_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth/indigoclient"
	"github.com/gin-atproto/oauth-sessions/ginoauth/storage"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// crashChildEnv carries the store spec, DID and session id to the child
// process of TestCrashedHolder.
const crashChildEnv = "INDIGOCLIENT_CRASH_CHILD"

// An app instance that holds a session's refresh lock is killed (SIGKILL:
// a real process, on a real SQLite file, Postgres or Redis). While it
// lived, its lease was renewed: another instance could not take the lock
// for longer than the lease. After the kill, the next refresh of that
// session on another instance waits a few seconds (the renewed lease,
// refreshLeaseTTL), not the 30 s of the old lease, and the login
// survives. (Failed, waiting about 30 s, with the lease not renewed and
// as long as the longest hold.) Run with -v for the measured waits.
func TestCrashedHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, backend := range []string{"sqlite", "postgres", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			store, spec := testdb.Shared(t, backend)
			r := newRig(t)
			one := r.app(store)
			b, id := r.login(one)
			lockName := indigoclient.RefreshLockName(r.did.String(), id)

			child := exec.Command(os.Args[0], "-test.run=^TestCrashedHolderChild$", "-test.v", "-test.timeout=5m")
			child.Env = append(os.Environ(), crashChildEnv+"="+spec+"\n"+r.did.String()+"\n"+id)
			child.Stderr = os.Stderr
			out, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
			holding := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if strings.TrimSpace(sc.Text()) == "HOLDING" {
						close(holding)
					}
				}
			}()
			select {
			case <-holding:
			case <-time.After(time.Minute):
				t.Fatal("the child never took the refresh lock")
			}

			// Alive, the child keeps its lease through renewals.
			ctx, cancel := context.WithTimeout(context.Background(), indigoclient.RefreshLeaseTTL*3/2)
			unlock, err := store.(storage.Locker).Lock(ctx, lockName, time.Second)
			cancel()
			if err == nil {
				_ = unlock(context.Background())
				t.Fatal("the lock was taken while its holder was alive and renewing it")
			}

			if err := child.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed := time.Now()
			_ = child.Wait()
			resp := b.PostForm("/api/refresh", nil)
			waited := time.Since(killed)
			if resp.Status != http.StatusOK {
				t.Fatalf("refresh after the holder was killed: %d %s", resp.Status, resp.Body)
			}
			t.Logf("%s: a refresh on another instance waited %v after the lock's holder was killed (lease %v)", backend, waited.Round(10*time.Millisecond), indigoclient.RefreshLeaseTTL)
			// Generous against a loaded machine, far below the 30 s lease.
			if waited > 2*indigoclient.RefreshLeaseTTL+3*time.Second {
				t.Errorf("waited %v after the holder was killed, want about the %v lease", waited, indigoclient.RefreshLeaseTTL)
			}
			r.alive(one, id)
		})
	}
}

// TestCrashedHolderChild is TestCrashedHolder's doomed instance: it takes
// the refresh lock as a refresh does, says so, and works until killed.
func TestCrashedHolderChild(t *testing.T) {
	env := os.Getenv(crashChildEnv)
	if env == "" {
		t.Skip("only run by TestCrashedHolder")
	}
	parts := strings.SplitN(env, "\n", 3)
	store := testdb.OpenSpec(t, parts[0])
	c := indigoclient.New(indigoclient.LocalhostConfig("http://127.0.0.1:1/oauth/callback", []string{"atproto"}), store, indigoclient.Options{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := indigoclient.LockRefresh(ctx, c, parts[1], parts[2]); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("HOLDING\n")
	time.Sleep(5 * time.Minute)
}
