// Package browsertest drives the example apps in headless Chromium, as a
// person would: examples/basic (typing a handle, approving on the consent
// page of the built-in authorization server, calling the PDS, saving a
// note, the devices list from two browsers, logging out) and
// examples/minimal (the README's Quick start). It checks the pages, the
// layout at 1280 and 500 px (nothing wider than the window), and the
// browser's cookies, and saves screenshots.
//
// Run it with `bash examples/browsertest/run.sh`, which installs Chromium
// if needed. Environment: CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (default examples/browsertest/artifacts, ignored by git).
package browsertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

// The demo account of the example's built-in offline server.
const (
	demoHandle = "alice.test"
	demoDID    = "did:plc:alice2demo5account7local"
	// The collection of the demo's "Save a note" records.
	noteCollection = "com.example.ginoauth.note"
)

// The widths the pages are checked and photographed at: a laptop window,
// a narrow one (500 px is where the layout switches to one column) and a
// phone held upright.
var widths = []int64{1280, 500, 400}

func TestBasicExampleInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	root := repoRoot(t)
	tmp := t.TempDir()
	shots := newScreenshots(t)

	// Build the example as a user would run it, then start it on a free port.
	bin := buildExample(t, root, "basic", tmp)
	app := startProcess(t, bin, tmp, "ADDR=127.0.0.1:0", "DATA_DIR="+filepath.Join(tmp, "data"), "LOG_LEVEL=info")
	base := app.waitLine(t, bannerField("Open:"))
	pds := app.waitLine(t, bannerField("Network:")) // "... at http://127.0.0.1:port"
	t.Logf("app at %s, built-in PDS at %s", base, pds)

	ctx := newBrowser(t, chromium, filepath.Join(tmp, "chromium-profile"))
	problems := watchConsole(t, ctx)
	setWidth(t, ctx, 1280)

	// 1. The start page: type the handle, log in, approve on the consent page.
	do(t, ctx, "open the start page",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	if title := get(t, ctx, "read the title", chromedp.Title()); !strings.Contains(title, "Log in") {
		t.Fatalf("start page title = %q", title)
	}
	if n := count(t, ctx, "#notice"); n != 0 {
		t.Error("the start page shows a notice before anything happened")
	}
	login(t, ctx, base, true)

	// 2. Logged in: handle, DID, scopes; the cookies.
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/" {
		t.Errorf("after login the browser is at %s, want %s/", here, base)
	}
	handle := text(t, ctx, "#user-handle")
	did := text(t, ctx, "#user-did")
	if strings.TrimSpace(handle) != demoHandle || strings.TrimSpace(did) != demoDID {
		t.Fatalf("account page shows handle %q and DID %q, want %q and %q", handle, did, demoHandle, demoDID)
	}
	page := text(t, ctx, "main")
	for _, want := range []string{"atproto", "repo:com.example.ginoauth.note?action=create", "Session ends", "Your devices"} {
		if !strings.Contains(page, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if href := get(t, ctx, "read the footer link", chromedp.Evaluate[string](`document.getElementById("session-link").getAttribute("href")`)); href != "/#session" {
		t.Errorf("the footer's session link goes to %q, want the account page (/#session)", href)
	}
	checkCookies(t, ctx, true)
	for _, w := range widths {
		setWidth(t, ctx, w)
		checkIdentity(t, ctx)
	}
	setWidth(t, ctx, 1280)

	// 3. An authenticated call to the PDS. The post answers with a redirect
	// (Post/Redirect/Get): the result is on the account page.
	do(t, ctx, "click Call my PDS",
		chromedp.Click(chromedp.ID("call-pds")),
		chromedp.WaitVisible(chromedp.ID("result")),
	)
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/#pds" {
		t.Errorf("after the PDS call the browser is at %s, want %s/#pds", here, base)
	}
	result := text(t, ctx, "#result")
	if !strings.Contains(result, "Your PDS confirms this login belongs to "+demoHandle+" ("+demoDID+")") || !strings.Contains(result, `"did": "`+demoDID+`"`) {
		t.Fatalf("PDS call result:\n%s", result)
	}
	for _, w := range widths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the account page with the PDS's answer")
		shots.save(t, ctx, "basic-pds-answer-"+px(w))
	}
	setWidth(t, ctx, 1280)
	do(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-did")))
	if n := count(t, ctx, "#result"); n != 0 {
		t.Error("a reload shows the old result again")
	}

	// 4. Save a note with a long word and a long at:// address: the text
	// is shown, everything wraps inside its card, and a reload does not
	// save it again.
	note := "Hello from Chromium. A long word that must wrap: " + strings.Repeat("abcdefghij", 16)
	do(t, ctx, "type a note and click Save a note",
		chromedp.SendKeys(chromedp.ID("note"), note),
		chromedp.Click(chromedp.ID("save-note")),
		chromedp.WaitVisible(chromedp.ID("note-text")),
	)
	if got := text(t, ctx, "#note-text"); got != note {
		t.Errorf("the saved note shows as %q, want %q", got, note)
	}
	uri := text(t, ctx, "#record-uri")
	if !strings.HasPrefix(uri, "at://"+demoDID+"/"+noteCollection+"/") {
		t.Errorf("record address %q", uri)
	}
	if n := notes(t, pds); n != 1 {
		t.Fatalf("%d notes in the repository after saving one", n)
	}
	for _, w := range widths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the account page with a saved note")
		shots.save(t, ctx, "basic-note-saved-"+px(w))
	}
	setWidth(t, ctx, 1280)
	do(t, ctx, "reload after saving", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-did")))
	do(t, ctx, "reload once more", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-did")))
	if n := notes(t, pds); n != 1 {
		t.Fatalf("%d notes after reloading the page: a reload saved the note again", n)
	}
	if n := count(t, ctx, "#result"); n != 0 {
		t.Error("a reload shows the old result again")
	}
	checkCookies(t, ctx, true) // the flash cookie is gone once shown

	// 5. Your devices: log in from a second browser (its own cookies); both
	// sessions are listed, each browser marks its own.
	other := secondBrowser(t, ctx)
	otherProblems := watchConsole(t, other)
	setWidth(t, other, 1280)
	login(t, other, base, false)
	checkDevices(t, other, 2)
	do(t, ctx, "reload the first browser's account page", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("devices")))
	checkDevices(t, ctx, 2)
	for _, w := range widths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the account page with two devices")
		shots.save(t, ctx, "basic-devices-"+px(w))
	}
	setWidth(t, ctx, 1280)

	// End the other browser's session from the first: it is logged out.
	do(t, ctx, "click End session on the other device",
		chromedp.Click(chromedp.CSS(`.device:not(.current) .end-session`)),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if n := text(t, ctx, "#notice"); !strings.Contains(n, "Ended the session of Chrome on Linux") {
		t.Errorf("notice after ending a session: %q", n)
	}
	checkDevices(t, ctx, 1)
	do(t, other, "reload the other browser", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("handle")))
	if n := count(t, other, "#user-did"); n != 0 {
		t.Fatal("the ended session still works in the other browser")
	}

	// Log out other devices.
	login(t, other, base, false)
	do(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("end-others")))
	checkDevices(t, ctx, 2)
	do(t, ctx, "click Log out other devices",
		chromedp.Click(chromedp.ID("end-others")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if n := text(t, ctx, "#notice"); !strings.Contains(n, "Logged out 1 other device") {
		t.Errorf("notice after logging out the others: %q", n)
	}
	checkDevices(t, ctx, 1)
	do(t, other, "reload the other browser", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("handle")))

	// 6. Log out: back to the start page, which says so once; the session
	// cookie is gone.
	do(t, ctx, "click Log out",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	here := get(t, ctx, "read the URL", chromedp.Location())
	title := get(t, ctx, "read the title", chromedp.Title())
	if here != base+"/" || !strings.Contains(title, "Log in") {
		t.Fatalf("after logout: at %s, title %q", here, title)
	}
	if n := text(t, ctx, "#notice"); !strings.Contains(n, "You are logged out") {
		t.Errorf("no logged-out notice after logout: %q", n)
	}
	for _, w := range widths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the start page after logout")
		shots.save(t, ctx, "basic-logged-out-"+px(w))
	}
	setWidth(t, ctx, 1280)
	checkCookies(t, ctx, false)
	do(t, ctx, "reload the start page", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("handle")))
	if n := count(t, ctx, "#notice"); n != 0 {
		t.Error("the logged-out notice shows again after a reload")
	}

	// 7. Log out everywhere, from the second browser: both are logged out.
	login(t, ctx, base, true)
	login(t, other, base, false)
	do(t, other, "click Log out everywhere",
		chromedp.Click(chromedp.ID("end-all")),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	if n := text(t, other, "#notice"); !strings.Contains(n, "You are logged out everywhere: on this device and on 1 other") {
		t.Errorf("notice after logging out everywhere: %q", n)
	}
	do(t, ctx, "reload the first browser", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("handle")))
	checkCookies(t, ctx, false)

	for _, p := range [][]string{problems(), otherProblems()} {
		if len(p) > 0 {
			t.Errorf("the browser reported problems (CSP violations, script errors, failed loads):\n%s", strings.Join(p, "\n"))
		}
	}

	// Ctrl+C: the app shuts down cleanly.
	if err := app.stop(); err != nil {
		t.Errorf("the app did not exit cleanly after SIGINT: %v\n%s", err, app.stderr.String())
	}
	if l := app.stderr.String(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
		t.Errorf("the app logged errors:\n%s", l)
	}
}

// bannerField matches the banner line "  <label> ... <URL>" and returns its
// last field, the URL.
func bannerField(label string) func(string) (string, bool) {
	return func(line string) (string, bool) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == label && strings.HasPrefix(f[len(f)-1], "http://") {
			return f[len(f)-1], true
		}
		return "", false
	}
}

// login logs in as the demo account from the start page: type the handle,
// click Log in, approve on the consent page. checkConsent also checks what
// the consent page says.
func login(t *testing.T, ctx context.Context, base string, checkConsent bool) {
	t.Helper()
	do(t, ctx, "type the handle and click Log in",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("handle")),
		chromedp.SendKeys(chromedp.ID("handle"), demoHandle),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)),
	)
	if checkConsent {
		consentURL := get(t, ctx, "read the consent page's URL", chromedp.Location())
		consent := text(t, ctx, "main")
		if strings.HasPrefix(consentURL, base) || !strings.Contains(consentURL, "/oauth/authorize?") {
			t.Fatalf("want the authorization server's consent page, at %s", consentURL)
		}
		for _, want := range []string{"Authorize", "@" + demoHandle, demoDID, "atproto", base + "/oauth/callback"} {
			if !strings.Contains(consent, want) {
				t.Errorf("consent page lacks %q:\n%s", want, consent)
			}
		}
	}
	do(t, ctx, "click Approve",
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("user-did")),
	)
}

// checkDevices checks the devices list: n sessions, exactly one of them
// marked as this device, all of them browsers (Chrome on Linux), with an
// End button on each of the others.
func checkDevices(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	var list struct {
		Items, Current, Buttons int
		Texts                   []string
	}
	raw := get(t, ctx, "read the devices list", chromedp.Evaluate[string](`JSON.stringify({
		Items: document.querySelectorAll("#device-list .device").length,
		Current: document.querySelectorAll("#device-list .device.current .this-device").length,
		Buttons: document.querySelectorAll("#device-list .end-session").length,
		Texts: [...document.querySelectorAll("#device-list .device")].map(e => e.innerText),
	})`))
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatal(err)
	}
	if list.Items != n || list.Current != 1 || list.Buttons != n-1 {
		t.Fatalf("devices list: %d sessions (%d marked this device, %d End buttons), want %d (1, %d):\n%s",
			list.Items, list.Current, list.Buttons, n, n-1, strings.Join(list.Texts, "\n"))
	}
	for _, s := range list.Texts {
		if !strings.Contains(s, "Chrome on Linux") || !strings.Contains(s, "Browser") || !strings.Contains(s, "Logged in ") || !strings.Contains(s, "last seen") {
			t.Errorf("device entry %q lacks its description, kind, login time or last-seen time", s)
		}
	}
}

// notes counts the demo's notes in the account's repository, asking the
// built-in PDS (listRecords needs no login).
func notes(t *testing.T, pds string) int {
	t.Helper()
	resp, err := http.Get(pds + "/xrpc/com.atproto.repo.listRecords?repo=" + url.QueryEscape(demoDID) + "&collection=" + noteCollection + "&limit=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Records []json.RawMessage `json:"records"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("listRecords on the built-in PDS: HTTP %d", resp.StatusCode)
	}
	return len(out.Records)
}

// text returns the visible text of the first element matching sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// count returns how many elements match sel, without waiting for any.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	js, _ := json.Marshal(sel)
	return get(t, ctx, "count "+sel, chromedp.Evaluate[int](`document.querySelectorAll(`+string(js)+`).length`))
}

// px names a width in screenshot file names: 1280px.
func px(w int64) string { return strconv.FormatInt(w, 10) + "px" }

// checkCookies checks the browser's cookies: after login the sid cookie is
// there and HttpOnly (scripts cannot read it); after logout it is gone. No
// cookie may carry anything that looks like a token, a key or a DID: the
// browser holds only sealed, random session ids (and, between a form post
// and the page after it, a sealed flash).
func checkCookies(t *testing.T, ctx context.Context, loggedIn bool) {
	t.Helper()
	res := get(t, ctx, "read cookies", chromedp.Action[storage.GetCookiesResult](
		func(ctx context.Context, tg *chromedp.Target) (storage.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, storage.GetCookies, storage.GetCookiesParams{})
		}))
	jsCookies := get(t, ctx, "read document.cookie", chromedp.Evaluate[string](`document.cookie`))
	var sid *network.Cookie
	for _, c := range res.Cookies {
		limit := 512
		switch c.Name {
		case "sid":
			sid = c
		case "sid_flow":
		case "flash":
			t.Errorf("a flash cookie is left over after its page was shown")
			limit = 4096
		default:
			t.Errorf("unexpected cookie %q", c.Name)
		}
		if !c.HTTPOnly {
			t.Errorf("cookie %s is not HttpOnly", c.Name)
		}
		for _, bad := range []string{"eyJ", "did:", "DPoP", "Bearer", "access", "refresh", demoHandle} {
			if strings.Contains(c.Value, bad) {
				t.Errorf("cookie %s holds %q: %s", c.Name, bad, c.Value)
			}
		}
		if len(c.Value) > limit {
			t.Errorf("cookie %s is %d bytes: more than a sealed session id", c.Name, len(c.Value))
		}
	}
	switch {
	case loggedIn && sid == nil:
		t.Fatal("no sid cookie after login")
	case loggedIn && (sid.SameSite != network.CookieSameSiteLax || sid.Path != "/"):
		t.Errorf("sid cookie: SameSite %q, Path %q; want Lax and /", sid.SameSite, sid.Path)
	case !loggedIn && sid != nil:
		t.Error("the sid cookie is still there after logout")
	}
	if strings.Contains(jsCookies, "sid") {
		t.Errorf("page scripts can read the session cookie: %q", jsCookies)
	}
}
