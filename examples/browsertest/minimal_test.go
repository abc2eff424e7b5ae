package browsertest

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// minimalAddr is where examples/minimal listens: fixed, as in the README's
// Quick start.
const minimalAddr = "127.0.0.1:8080"

// The README's Quick start (examples/minimal) through a real login in
// Chromium: the form, the consent page, the private page, and logout back
// to the start page.
func TestMinimalExampleInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	root := repoRoot(t)
	tmp := t.TempDir()
	shots := newScreenshots(t)

	// The example listens only on 127.0.0.1:8080.
	ln, err := net.Listen("tcp", minimalAddr)
	if err != nil {
		t.Skipf("%s is in use, and examples/minimal listens only there: its browser test did not run (%v)", minimalAddr, err)
	}
	ln.Close()

	bin := buildExample(t, root, "minimal", tmp)
	work := filepath.Join(tmp, "work") // it writes minimal.db into its working directory
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	app := startProcess(t, bin, work)
	base := app.waitLine(t, func(line string) (string, bool) {
		// "Open http://127.0.0.1:8080 and log in as alice.test"
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Open" {
			return f[1], true
		}
		return "", false
	})
	waitServing(t, app, base)

	ctx := newBrowser(t, chromium, filepath.Join(tmp, "chromium-profile"))
	problems := watchConsole(t, ctx)
	setWidth(t, ctx, 1280)

	// The start page's form, with the handle filled in.
	do(t, ctx, "open the start page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"] input[name="handle"]`)),
	)
	if v := get(t, ctx, "read the handle field", chromedp.Evaluate[string](`document.querySelector('input[name="handle"]').value`)); v != "alice.test" {
		t.Errorf("the handle field holds %q, want alice.test", v)
	}
	shots.save(t, ctx, "minimal-start")
	do(t, ctx, "click Log in",
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)),
	)

	// The consent page of the local authorization server.
	consentURL := get(t, ctx, "read the consent page's URL", chromedp.Location())
	consent := text(t, ctx, "main")
	if strings.HasPrefix(consentURL, base) || !strings.Contains(consentURL, "/oauth/authorize?") {
		t.Fatalf("want the authorization server's consent page, at %s", consentURL)
	}
	for _, want := range []string{"Authorize", "@alice.test", "atproto", base + "/oauth/callback"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent page lacks %q:\n%s", want, consent)
		}
	}
	do(t, ctx, "click Approve",
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/private"]`)),
	)

	// Logged in: the greeting, then the private page.
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/" {
		t.Errorf("after login the browser is at %s, want %s/", here, base)
	}
	if body := text(t, ctx, "body"); !strings.Contains(body, "Hello @alice.test") {
		t.Fatalf("after login: %q", body)
	}
	shots.save(t, ctx, "minimal-logged-in")
	do(t, ctx, "click Private page",
		chromedp.Click(chromedp.CSS(`a[href="/private"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/"]`)),
	)
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/private" {
		t.Errorf("the private page is at %s", here)
	}
	if body := text(t, ctx, "body"); !strings.Contains(body, "Only for you, did:plc:") {
		t.Fatalf("private page: %q", body)
	}
	shots.save(t, ctx, "minimal-private")

	// Back, and log out: the start page again, and the private page is
	// closed.
	do(t, ctx, "click Back and Log out",
		chromedp.Click(chromedp.CSS(`a[href="/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/api/logout"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/api/logout"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/login"]`)),
	)
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/" {
		t.Errorf("after logout the browser is at %s, want %s/", here, base)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+"/private"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("the private page after logout: HTTP %d, want 401", resp.Status)
	}

	// Expected: the 401 of the last step, and the 404 of the favicon
	// Chromium asks for (the minimal page names none). Nothing else.
	var other []string
	for _, p := range problems() {
		expected := strings.Contains(p, "status of 401") && strings.HasSuffix(p, "("+base+"/private)") ||
			strings.Contains(p, "status of 404") && strings.HasSuffix(p, "("+base+"/favicon.ico)")
		if !expected {
			other = append(other, p)
		}
	}
	if len(other) > 0 {
		t.Errorf("the browser reported problems (script errors, failed loads):\n%s", strings.Join(other, "\n"))
	}
	_ = app.stop() // it has no signal handler: SIGINT ends it at once
}

// waitServing waits until the app answers on base.
func waitServing(t *testing.T, app *process, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app does not answer on %s: %v\n%s", base, err, app.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
