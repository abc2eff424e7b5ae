package demoapp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/examples/internal/demoapp"
	"github.com/gin-atproto/oauth-sessions/examples/internal/demotest"
)

// notes counts the demo's note records in the account's repository on the
// built-in PDS (listRecords needs no login).
func notes(t *testing.T, a *testApp, did string) int {
	t.Helper()
	resp, err := http.Get(a.Network.Local().URL() + "/xrpc/com.atproto.repo.listRecords?repo=" + url.QueryEscape(did) + "&collection=" + demoapp.NoteCollection + "&limit=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Records []json.RawMessage `json:"records"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("listRecords: %d", resp.StatusCode)
	}
	return len(out.Records)
}

// Form posts answer 303 to the account page (Post/Redirect/Get); the
// result comes in a flash cookie and is shown once, so a reload neither
// repeats the post (no second note) nor shows the old result.
func TestPostRedirectGet(t *testing.T) {
	a := newTestApp(t)
	b := demotest.NewBrowser(t, a.URL)
	b.Login("alice.test", true)

	saved := b.Post("/pds/note", url.Values{"text": {"a note with a very long word: " + strings.Repeat("x", 200)}})
	if saved.Status != http.StatusSeeOther || saved.Header.Get("Location") != "/#pds" || saved.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("note: want 303 to /#pds, not cached, got %d %q", saved.Status, saved.Header.Get("Location"))
	}
	if b.Cookie("flash") == nil {
		t.Fatal("no flash cookie after the post")
	}
	page := b.Follow(saved)
	if !page.Contains("Note saved") || !page.Contains(`id="note-text">a note with a very long word: xxxx`) || !page.Contains(`id="record-uri">at://`+demoapp.DemoAccount.DID+"/"+demoapp.NoteCollection+"/") {
		t.Fatalf("the result after the redirect: %.2000s", page.Body)
	}
	if b.Cookie("flash") != nil {
		t.Fatal("the flash cookie is still there after it was shown")
	}
	if n := notes(t, a, demoapp.DemoAccount.DID); n != 1 {
		t.Fatalf("%d notes, want 1", n)
	}
	// A reload (the GET again): no result, no second note.
	reload := b.Get("/")
	if reload.Status != http.StatusOK || reload.Contains("Note saved") || !reload.Contains("@alice.test") {
		t.Fatalf("reload: %d %.600s", reload.Status, reload.Body)
	}
	if n := notes(t, a, demoapp.DemoAccount.DID); n != 1 {
		t.Fatalf("%d notes after a reload, want 1", n)
	}
	// Plain visits carry no flash and get no Set-Cookie.
	if sc := reload.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("a page without a flash sets cookies: %q", sc)
	}

	// A result that was never shown does not reach another account that
	// logs in on the same browser.
	if p := b.Post("/pds/note", url.Values{"text": {"alice's unseen note"}}); p.Status != http.StatusSeeOther {
		t.Fatalf("note: %d", p.Status)
	}
	if p := b.Login("bob.test", true); !p.Contains("@bob.test") || p.Contains("alice's unseen note") || p.Contains("Note saved") {
		t.Fatalf("bob sees alice's result: %.1500s", p.Body)
	}

	// A tampered flash cookie is ignored and deleted.
	u, _ := url.Parse(a.URL)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: "flash", Value: "not-sealed", Path: "/"}})
	if p := b.Get("/"); p.Status != http.StatusOK || !p.Contains("@bob.test") {
		t.Fatalf("with a tampered flash: %d %.300s", p.Status, p.Body)
	}
	if b.Cookie("flash") != nil {
		t.Fatal("a tampered flash cookie is kept")
	}
}

var refInput = regexp.MustCompile(`<input type="hidden" name="ref" value="([^"]+)">`)

// The devices section lists every session of the account; the forms end
// one, the others, or all of them.
func TestDevices(t *testing.T) {
	a := newTestApp(t)
	one := demotest.NewBrowser(t, a.URL)
	two := demotest.NewBrowser(t, a.URL)
	one.Login("alice.test", true)
	two.Login("alice.test", true)

	page := one.Get("/")
	if c := strings.Count(page.Body, `<li class="device`); c != 2 || strings.Count(page.Body, `<li class="device current"`) != 1 {
		t.Fatalf("want 2 sessions, this one marked: %d\n%.3000s", c, page.Body)
	}
	for _, want := range []string{"Your devices", "Go program", "Browser", "This device", "last seen now", "last seen in the last hour", "Log out other devices", "Log out everywhere"} {
		if !page.Contains(want) {
			t.Errorf("devices section lacks %q", want)
		}
	}
	refs := refInput.FindAllStringSubmatch(page.Body, -1)
	if len(refs) != 1 {
		t.Fatalf("want one End button (not for this device), got %d", len(refs))
	}

	// Forms from other sites are refused.
	for _, path := range []string{"/devices/end", "/devices/end-others", "/devices/end-all"} {
		if p := one.Do(http.MethodPost, path, url.Values{"ref": {refs[0][1]}}, "https://evil.example"); p.Status != http.StatusForbidden {
			t.Fatalf("cross-site %s: %d", path, p.Status)
		}
	}
	// Not logged in: the start page.
	if p := demotest.NewBrowser(t, a.URL).Post("/devices/end-all", url.Values{}); p.Status != http.StatusUnauthorized || !p.Contains(`id="handle"`) {
		t.Fatalf("end-all without a login: %d", p.Status)
	}

	// End the other one.
	ended := one.Post("/devices/end", url.Values{"ref": {refs[0][1]}})
	if ended.Status != http.StatusSeeOther || ended.Header.Get("Location") != "/#devices" {
		t.Fatalf("end one: %d %q", ended.Status, ended.Header.Get("Location"))
	}
	if p := one.Follow(ended); !p.Contains("Ended the session of Go program") || strings.Count(p.Body, `<li class="device`) != 1 {
		t.Fatalf("after ending the other session: %.3000s", p.Body)
	}
	if p := two.Get("/"); !p.Contains(`id="handle"`) || p.Contains(demoapp.DemoAccount.DID) {
		t.Fatalf("the ended session still works: %.300s", p.Body)
	}
	if n := activeOAuthSessions(a, "alice.test"); n != 1 {
		t.Fatalf("the ended session's tokens are not revoked: %d live OAuth sessions", n)
	}
	if p := one.Follow(one.Post("/devices/end", url.Values{"ref": {refs[0][1]}})); !p.Contains("already ended") {
		t.Fatalf("ending it again: %.600s", p.Body)
	}

	// Log out the other devices: two more logins, both ended.
	two.Login("alice.test", true)
	three := demotest.NewBrowser(t, a.URL)
	three.Login("alice.test", true)
	if p := one.Follow(one.Post("/devices/end-others", url.Values{})); !p.Contains("Logged out 2 other devices") || strings.Count(p.Body, `<li class="device`) != 1 || p.Contains("Log out other devices") {
		t.Fatalf("end others: %.3000s", p.Body)
	}
	for _, b := range []*demotest.Browser{two, three} {
		if p := b.Get("/"); p.Contains(demoapp.DemoAccount.DID) {
			t.Fatal("an ended session still works")
		}
	}

	// Log out everywhere, from the second browser: both are logged out.
	two.Login("alice.test", true)
	all := two.Post("/devices/end-all", url.Values{})
	if all.Status != http.StatusSeeOther || all.Header.Get("Location") != "/" || two.Cookie("sid") != nil {
		t.Fatalf("end all: %d %q, sid cookie kept: %v", all.Status, all.Header.Get("Location"), two.Cookie("sid") != nil)
	}
	if p := two.Follow(all); !p.Contains("You are logged out everywhere: on this device and on 1 other") || !p.Contains(`id="handle"`) {
		t.Fatalf("after end all: %.1000s", p.Body)
	}
	if p := one.Get("/"); p.Contains(demoapp.DemoAccount.DID) {
		t.Fatal("the first browser is still logged in after log out everywhere")
	}
	if n := activeOAuthSessions(a, "alice.test"); n != 0 {
		t.Fatalf("%d OAuth sessions still live after log out everywhere", n)
	}

	// Ending this device's own session from the list is a logout.
	one.Login("alice.test", true)
	own := refInput.FindAllStringSubmatch(strings.ReplaceAll(one.Get("/").Body, `class="device current"`, ""), -1)
	if len(own) != 0 {
		t.Fatalf("this device has an End button")
	}
	if strings.Contains(a.logs.String(), "level=ERROR") {
		t.Fatalf("errors in the logs:\n%s", a.logs.String())
	}
}

// activeOAuthSessions counts the account's OAuth sessions that the
// authorization server still accepts.
func activeOAuthSessions(a *testApp, account string) int {
	n := 0
	for _, s := range a.Network.Local().Sessions(account) {
		if s.Active {
			n++
		}
	}
	return n
}

// The banner names the metrics endpoint, once per app (every instance has
// its own).
func TestBannerMetrics(t *testing.T) {
	var one, two, none strings.Builder
	demoapp.Banner{URLs: []string{"http://127.0.0.1:8080"}, Metrics: "/metrics"}.Print(&one)
	demoapp.Banner{URLs: []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081"}, Metrics: "/metrics"}.Print(&two)
	demoapp.Banner{URLs: []string{"http://127.0.0.1:8080"}}.Print(&none)
	if !strings.Contains(one.String(), "Metrics:   http://127.0.0.1:8080/metrics (Prometheus)") {
		t.Errorf("banner:\n%s", one.String())
	}
	if !strings.Contains(two.String(), "Metrics:   /metrics on every instance, e.g. http://127.0.0.1:8080/metrics") {
		t.Errorf("banner of two instances:\n%s", two.String())
	}
	if strings.Contains(none.String(), "Metrics") {
		t.Errorf("banner without metrics:\n%s", none.String())
	}
	if urls := demotest.URLsFromBanner(t, strings.NewReader(two.String()), 2, time.Second); urls[1] != "http://127.0.0.1:8081" {
		t.Errorf("the metrics line confuses URLsFromBanner: %v", urls)
	}
}
