package browsertest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The demo's second account on the built-in offline server.
const (
	secondHandle = "bob.test"
	secondDID    = "did:plc:bob2demo5account7localxx"
)

// The widths the account switcher is checked at: a laptop window and a
// phone held upright.
var switcherWidths = []int64{1280, 390}

// TestBasicAccountSwitcherInChromium drives the account switcher of
// examples/basic: log in as alice.test, add bob.test, switch back and
// forth (the page and the PDS answer as the active account), sign out of
// one account (the other becomes active), add it again, and log out of
// all; at desktop and phone widths.
func TestBasicAccountSwitcherInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	root := repoRoot(t)
	tmp := t.TempDir()
	shots := newScreenshots(t)

	bin := buildExample(t, root, "basic", tmp)
	app := startProcess(t, bin, tmp, "ADDR=127.0.0.1:0", "DATA_DIR="+filepath.Join(tmp, "data"), "LOG_LEVEL=info")
	base := app.waitLine(t, bannerField("Open:"))

	ctx := newBrowser(t, chromium, filepath.Join(tmp, "chromium-profile"))
	problems := watchConsole(t, ctx)
	setWidth(t, ctx, 1280)

	login(t, ctx, base, false)
	checkAccounts(t, ctx, demoDID, demoDID)

	// Add bob.test: a new login (prompt=login) that keeps alice.
	addAccount(t, ctx, secondHandle)
	checkAccounts(t, ctx, secondDID, secondDID, demoDID)
	if name := text(t, ctx, "#account-list .account.current strong"); name != "Bob Example" {
		t.Errorf("the active account's name from Config.DescribeAccounts: %q", name)
	}
	for _, w := range switcherWidths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the account switcher with two accounts")
		shots.save(t, ctx, "basic-accounts-"+px(w))
	}
	setWidth(t, ctx, 1280)
	checkPDS(t, ctx, secondHandle, secondDID)

	// Switch to alice, at the phone width: the page and the PDS are hers.
	setWidth(t, ctx, 390)
	do(t, ctx, "click Switch on alice",
		chromedp.Click(chromedp.CSS(`#account-list .account[data-did="`+demoDID+`"] .switch-account`)),
		chromedp.WaitVisible(activeRow(demoDID)),
	)
	checkAccounts(t, ctx, demoDID, demoDID, secondDID)
	checkLayout(t, ctx, "the account page after a switch")
	checkPDS(t, ctx, demoHandle, demoDID)
	setWidth(t, ctx, 1280)

	// Sign out of alice only: bob becomes active.
	do(t, ctx, "click Sign out of this account",
		chromedp.Click(chromedp.ID("logout-account")),
		chromedp.WaitVisible(activeRow(secondDID)),
	)
	checkAccounts(t, ctx, secondDID, secondDID)
	checkPDS(t, ctx, secondHandle, secondDID)

	// Add alice again, then log out of all accounts.
	addAccount(t, ctx, demoHandle)
	checkAccounts(t, ctx, demoDID, demoDID, secondDID)
	if label := text(t, ctx, "#logout"); label != "Log out of all accounts" {
		t.Errorf("the logout button says %q", label)
	}
	do(t, ctx, "click Log out of all accounts",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	checkCookies(t, ctx, false)
	for _, w := range switcherWidths {
		setWidth(t, ctx, w)
		checkLayout(t, ctx, "the start page after logging out of all accounts")
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the browser reported problems:\n%s", strings.Join(p, "\n"))
	}
	if err := app.stop(); err != nil {
		t.Errorf("the app did not exit cleanly after SIGINT: %v\n%s", err, app.stderr.String())
	}
	if l := app.stderr.String(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
		t.Errorf("the app logged errors:\n%s", l)
	}
}

// addAccount types handle into the switcher's Add another account form
// and approves on the consent page.
func addAccount(t *testing.T, ctx context.Context, handle string) {
	t.Helper()
	do(t, ctx, "add the account "+handle,
		chromedp.SendKeys(chromedp.ID("add-handle"), handle),
		chromedp.Click(chromedp.ID("add-account")),
		chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)),
	)
	if consent := text(t, ctx, "main"); !strings.Contains(consent, "@"+handle) {
		t.Errorf("the consent page is not for %s:\n%s", handle, consent)
	}
	do(t, ctx, "click Approve",
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("user-did")),
	)
}

// checkAccounts checks the account page: the active account's DID, and the
// switcher's list (DIDs in order, the first marked active, a Switch button
// on each other).
func checkAccounts(t *testing.T, ctx context.Context, active string, list ...string) {
	t.Helper()
	if did := strings.TrimSpace(text(t, ctx, "#user-did")); did != active {
		t.Fatalf("the account page shows %s, want %s", did, active)
	}
	var got struct {
		DIDs            []string
		Current, Switch int
	}
	raw := get(t, ctx, "read the account list", chromedp.Evaluate[string](`JSON.stringify({
		DIDs: [...document.querySelectorAll("#account-list .account")].map(e => e.dataset.did),
		Current: document.querySelectorAll("#account-list .account.current .active-account").length,
		Switch: document.querySelectorAll("#account-list .switch-account").length,
	})`))
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.DIDs, " ") != strings.Join(list, " ") || got.Current != 1 || got.Switch != len(list)-1 {
		t.Fatalf("account list %v (%d active, %d Switch buttons), want %v", got.DIDs, got.Current, got.Switch, list)
	}
}

// activeRow selects the switcher's row of did marked active: what the
// account page shows once a switch or sign-out has loaded it.
func activeRow(did string) string {
	return `#account-list .account.current[data-did="` + did + `"] .active-account`
}

// checkPDS calls the PDS from a freshly loaded account page and checks it
// answers as the account handle, did.
func checkPDS(t *testing.T, ctx context.Context, handle, did string) {
	t.Helper()
	base := get(t, ctx, "read the URL", chromedp.Location())
	if i := strings.Index(base, "/#"); i >= 0 {
		base = base[:i+1]
	}
	do(t, ctx, "click Call my PDS",
		chromedp.Navigate(base),
		chromedp.WaitVisible(activeRow(did)),
		chromedp.Click(chromedp.ID("call-pds")),
		chromedp.WaitVisible(chromedp.ID("result")),
	)
	if r := text(t, ctx, "#result"); !strings.Contains(r, "Your PDS confirms this login belongs to "+handle+" ("+did+")") {
		t.Fatalf("PDS call as %s:\n%s", handle, r)
	}
}
