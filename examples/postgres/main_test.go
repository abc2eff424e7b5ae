package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/stores/postgresstore"
)

// postgresDSN returns the test database, or skips: these tests need a real
// Postgres server.
func postgresDSN(t *testing.T) string {
	dsn := os.Getenv("GINOAUTH_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("GINOAUTH_TEST_POSTGRES_DSN is not set: skipping the Postgres example test " +
			"(e.g. GINOAUTH_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable')")
	}
	return dsn
}

// uniqueTable returns a table name of this test's own and drops its tables
// afterwards, so runs do not see each other's rows.
func uniqueTable(t *testing.T, dsn string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "ginoauth_example_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		s, err := postgresstore.Open(dsn, postgresstore.Options{Table: table, SkipMigration: true})
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer s.Close()
		if err := s.DB().Exec(`DROP TABLE IF EXISTS "` + table + `", "` + table + `_locks", "` + table + `_sets"`).Error; err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return table
}

// A session made on instance 1 works on instance 2, including calls to the
// PDS with the OAuth tokens instance 1 stored; a logout on instance 2 ends
// it on instance 1 too.
func TestSessionIsSharedAcrossInstances(t *testing.T) {
	dsn := postgresDSN(t)
	env := map[string]string{
		"ADDR":           "127.0.0.1:0",
		"DATA_DIR":       filepath.Join(t.TempDir(), "data"),
		"LOG_LEVEL":      "error",
		"DATABASE_URL":   dsn,
		"DATABASE_TABLE": uniqueTable(t, dsn),
		"INSTANCES":      "2",
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
		done <- err
	}()
	urls := demotest.URLsFromBanner(t, pr, 2, 60*time.Second)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(demoapp.ShutdownTimeout + 5*time.Second):
			t.Error("the instances did not shut down")
		}
	})
	if urls[0] == urls[1] {
		t.Fatalf("two instances on one URL: %v", urls)
	}

	one := demotest.NewBrowser(t, urls[0])
	if p := one.Login("alice.test", true); !p.Contains("@alice.test") || !p.Contains("instance 1 of 2") {
		t.Fatalf("login on instance 1: %.600s", p.Body)
	}
	sid := one.Cookie("sid")

	// Same browser, other instance (cookies are per host, not per port).
	two := one.At(urls[1])
	page := two.Get("/")
	if !page.Contains("@alice.test") || !page.Contains(demoapp.DemoAccount.DID) || !page.Contains("instance 2 of 2") {
		t.Fatalf("instance 2 does not know the session made on instance 1: %.600s", page.Body)
	}
	if p := two.Follow(two.Post("/pds/session", url.Values{})); p.Status != http.StatusOK || !p.Contains("Your PDS confirms this login belongs to alice.test") {
		t.Fatalf("PDS call on instance 2 with the tokens stored by instance 1: %d %.600s", p.Status, p.Body)
	}

	// Each instance has metrics of its own: the login was on instance 1.
	if m := scrape(t, urls[0]); !strings.Contains(m, `ginoauth_logins_finished_total{code="ok"} 1`) {
		t.Errorf("instance 1's metrics lack its login:\n%.2000s", m)
	}
	if m := scrape(t, urls[1]); strings.Contains(m, `ginoauth_logins_finished_total{code="ok"}`) || !strings.Contains(m, `ginoauth_session_check_seconds_count{outcome="ok"}`) {
		t.Errorf("instance 2's metrics: want session checks and no login:\n%.2000s", m)
	}

	// A second browser logs in on instance 2; instance 1 lists both
	// devices, and ending that session there logs it out on instance 2.
	other := demotest.NewBrowser(t, urls[1])
	if p := other.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login on instance 2: %.600s", p.Body)
	}
	devices := one.Get("/")
	refs := regexp.MustCompile(`name="ref" value="([^"]+)"`).FindAllStringSubmatch(devices.Body, -1)
	if strings.Count(devices.Body, `<li class="device`) != 2 || len(refs) != 1 {
		t.Fatalf("instance 1 should list the two sessions: %.3000s", devices.Body)
	}
	if p := one.Follow(one.Post("/devices/end", url.Values{"ref": {refs[0][1]}})); !p.Contains("Ended the session of") {
		t.Fatalf("ending the other session on instance 1: %.600s", p.Body)
	}
	if p := other.Get("/"); p.Contains(demoapp.DemoAccount.DID) {
		t.Fatal("a session ended on instance 1 still works on instance 2")
	}

	if p := two.Post("/logout", url.Values{}); p.Status != http.StatusSeeOther {
		t.Fatalf("logout on instance 2: %d", p.Status)
	}
	// The old cookie is dead on instance 1 as well.
	replay := demotest.NewBrowser(t, urls[0])
	u, _ := url.Parse(urls[0])
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "sid", Value: sid.Value, Path: "/"}})
	if p := replay.Get("/"); p.Contains(demoapp.DemoAccount.DID) || !strings.Contains(p.Body, "Log in with your handle") {
		t.Fatalf("a session logged out on instance 2 still works on instance 1: %.300s", p.Body)
	}
}

// Three instances on three ports are one OAuth client: a login made on the
// first is revoked by a logout on the third. (With the port in the
// client_id, the server refused that revocation as "issued to another
// client" and the tokens stayed live.)
func TestInstancesShareOneClientID(t *testing.T) {
	dsn := postgresDSN(t)
	env := map[string]string{
		"ADDR":           "127.0.0.1:0",
		"DATA_DIR":       filepath.Join(t.TempDir(), "data"),
		"LOG_LEVEL":      "warn",
		"DATABASE_URL":   dsn,
		"DATABASE_TABLE": uniqueTable(t, dsn),
		"INSTANCES":      "3",
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &apptest.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		err := run(ctx, func(k string) string { return env[k] }, pw, logs)
		pw.Close()
		done <- err
	}()
	urls := demotest.URLsFromBanner(t, pr, 3, 60*time.Second)
	defer func() {
		cancel()
		<-done
	}()
	one := demotest.NewBrowser(t, urls[0])
	if p := one.Login("alice.test", true); !p.Contains("@alice.test") {
		t.Fatalf("login on instance 1: %.600s", p.Body)
	}
	if p := one.At(urls[2]).Post("/logout", url.Values{}); p.Status != http.StatusSeeOther {
		t.Fatalf("logout on instance 3: %d", p.Status)
	}
	if strings.Contains(logs.String(), "revocation failed") {
		t.Fatalf("instance 3 could not revoke a login made on instance 1:\n%s", logs)
	}
}

func TestBadInstances(t *testing.T) {
	for _, n := range []string{"0", "11", "two"} {
		env := map[string]string{"DATA_DIR": t.TempDir(), "INSTANCES": n}
		err := run(context.Background(), func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "INSTANCES") {
			t.Errorf("INSTANCES=%s: want a configuration error, got %v", n, err)
		}
	}
}

// scrape returns the text of an instance's GET /metrics.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/metrics: %d", base, resp.StatusCode)
	}
	return string(body)
}
