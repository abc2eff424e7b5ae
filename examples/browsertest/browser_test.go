// Package browsertest drives examples/basic in headless Chromium: a person
// typing a handle, approving on the consent page of the built-in
// authorization server, calling their PDS and logging out. It checks the
// pages and the browser's cookies, and saves a screenshot of the logged-in
// page to testdata/screenshots/basic-logged-in.png.
//
// Run it with `bash examples/browsertest/run.sh`, which installs Chromium
// if needed. Environment: CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (default <repo>/testdata/screenshots).
package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

// The demo account of the example's built-in offline server.
const (
	demoHandle = "alice.test"
	demoDID    = "did:plc:alice2demo5account7local"
)

func TestBasicExampleInChromium(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("Chromium not found at %s (set CHROMIUM, or run examples/browsertest/run.sh, which installs it): %v", chromium, err)
	}
	root := repoRoot(t)
	tmp := t.TempDir()

	// Build the example as a user would run it, then start it on a free port.
	bin := filepath.Join(tmp, "basic")
	start := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./examples/basic")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/basic: %v\n%s", err, out)
	}
	t.Logf("built examples/basic in %v", time.Since(start).Round(time.Millisecond))
	base, logs := startApp(t, bin, filepath.Join(tmp, "data"))
	t.Logf("app at %s", base)

	ctx := newBrowser(t, chromium, filepath.Join(tmp, "chromium-profile"))
	problems := watchConsole(t, ctx)

	// 1. The start page: type the handle and log in.
	do(t, ctx, "open the start page",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	if title := get(t, ctx, "read the title", chromedp.Title()); !strings.Contains(title, "Log in") {
		t.Fatalf("start page title = %q", title)
	}
	do(t, ctx, "type the handle and click Log in",
		chromedp.SendKeys(chromedp.ID("handle"), demoHandle),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)),
	)

	// 2. The consent page of the authorization server.
	consentURL := get(t, ctx, "read the consent page's URL", chromedp.Location())
	consent := get(t, ctx, "read the consent page", chromedp.Text(chromedp.CSS("main")))
	if strings.HasPrefix(consentURL, base) || !strings.Contains(consentURL, "/oauth/authorize?") {
		t.Fatalf("want the authorization server's consent page, at %s", consentURL)
	}
	for _, want := range []string{"Authorize", "@" + demoHandle, demoDID, "atproto", base + "/oauth/callback"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent page lacks %q:\n%s", want, consent)
		}
	}
	do(t, ctx, "click Approve",
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.ID("user-did")),
	)

	// 3. Logged in: handle, DID, scopes.
	if here := get(t, ctx, "read the URL", chromedp.Location()); here != base+"/" {
		t.Errorf("after login the browser is at %s, want %s/", here, base)
	}
	handle := get(t, ctx, "read the handle", chromedp.Text(chromedp.ID("user-handle")))
	did := get(t, ctx, "read the DID", chromedp.Text(chromedp.ID("user-did")))
	if strings.TrimSpace(handle) != demoHandle || strings.TrimSpace(did) != demoDID {
		t.Fatalf("account page shows handle %q and DID %q, want %q and %q", handle, did, demoHandle, demoDID)
	}
	page := get(t, ctx, "read the account page", chromedp.Text(chromedp.CSS("main")))
	for _, want := range []string{"atproto", "repo:com.example.ginoauth.note?action=create", "Session ends"} {
		if !strings.Contains(page, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	checkCookies(t, ctx, true)

	// 4. An authenticated call to the PDS.
	do(t, ctx, "click Call my PDS",
		chromedp.Click(chromedp.ID("call-pds")),
		chromedp.WaitVisible(chromedp.ID("result")),
	)
	result := get(t, ctx, "read the result", chromedp.Text(chromedp.ID("result")))
	if !strings.Contains(result, "Your PDS confirms this login belongs to "+demoHandle+" ("+demoDID+")") || !strings.Contains(result, `"did": "`+demoDID+`"`) {
		t.Fatalf("PDS call result:\n%s", result)
	}

	// 5. The screenshot, the artifact of this test.
	png := get(t, ctx, "take a screenshot", chromedp.FullScreenshot(100))
	shotDir := os.Getenv("SCREENSHOT_DIR")
	if shotDir == "" {
		shotDir = filepath.Join(root, "testdata", "screenshots")
	}
	if err := os.MkdirAll(shotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(shotDir, "basic-logged-in.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))

	// 6. Log out: back to the start page, and the session cookie is gone.
	do(t, ctx, "click Log out",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("handle")),
	)
	here := get(t, ctx, "read the URL", chromedp.Location())
	title := get(t, ctx, "read the title", chromedp.Title())
	if here != base+"/" || !strings.Contains(title, "Log in") {
		t.Fatalf("after logout: at %s, title %q", here, title)
	}
	checkCookies(t, ctx, false)

	if p := problems(); len(p) > 0 {
		t.Errorf("the browser reported problems (CSP violations, script errors, failed loads):\n%s", strings.Join(p, "\n"))
	}

	// Ctrl+C: the app shuts down cleanly.
	if err := stopApp(t); err != nil {
		t.Errorf("the app did not exit cleanly after SIGINT: %v\n%s", err, logs())
	}
	if l := logs(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
		t.Errorf("the app logged errors:\n%s", l)
	}
}

// checkCookies checks the browser's cookies: after login the sid cookie is
// there and HttpOnly (scripts cannot read it); after logout it is gone. No
// cookie may carry anything that looks like a token, a key or a DID: the
// browser holds only sealed, random session ids.
func checkCookies(t *testing.T, ctx context.Context, loggedIn bool) {
	t.Helper()
	res := get(t, ctx, "read cookies", chromedp.Action[storage.GetCookiesResult](
		func(ctx context.Context, tg *chromedp.Target) (storage.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, storage.GetCookies, storage.GetCookiesParams{})
		}))
	cookies := res.Cookies
	jsCookies := get(t, ctx, "read document.cookie", chromedp.Evaluate[string](`document.cookie`))
	var sid *network.Cookie
	for _, c := range cookies {
		if c.Name == "sid" {
			sid = c
		}
		if c.Name != "sid" && c.Name != "sid_flow" {
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
		if len(c.Value) > 512 {
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

// do runs chromedp actions with a bound on the time, naming the step when
// it fails.
func do(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

// get runs one chromedp action that returns a value.
func get[T any](t *testing.T, ctx context.Context, step string, action chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, action)
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return v
}

// newBrowser starts headless Chromium with flags that keep it off the
// network (without the background-networking flags it tries Google's
// services and this sandbox refuses the connections) and a new profile.
func newBrowser(t *testing.T, chromium, profile string) context.Context {
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // Chromium refuses to sandbox as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1000, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser; it gets no timeout, since that
	// would bound the browser's whole life.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromium, err)
	}
	return ctx
}

// watchConsole collects script exceptions, console errors and browser log
// errors (CSP violations, failed loads) from every page.
func watchConsole(t *testing.T, ctx context.Context) func() []string {
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the browser context ended
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s (%s)", m.Source, m, m.URL))
				mu.Unlock()
			}
		}
	}()
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), problems...) }
}

var (
	appMu   sync.Mutex
	appCmd  *exec.Cmd
	appDone chan error
)

// startApp runs the built example with a fresh data directory on a free
// port and returns its URL (read from its banner) and its logs.
func startApp(t *testing.T, bin, dataDir string) (string, func() string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ADDR=127.0.0.1:0", "DATA_DIR="+dataDir, "LOG_LEVEL=info")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	appMu.Lock()
	appCmd, appDone = cmd, done
	appMu.Unlock()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "Open:" {
				urls <- f[1]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = stopApp(t) })
	select {
	case u := <-urls:
		return u, stderr.String
	case err := <-done:
		t.Fatalf("the app exited before serving: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the app printed no URL within a minute\n%s", stderr.String())
	}
	return "", nil
}

// stopApp sends SIGINT (Ctrl+C) and waits for a clean exit.
func stopApp(t *testing.T) error {
	appMu.Lock()
	cmd, done := appCmd, appDone
	appCmd = nil
	appMu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("no exit 20s after SIGINT")
	}
}

// repoRoot is the checkout this module sits in (two levels up).
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(mod, []byte("module github.com/gin-atproto/oauth-sessions\n")) {
		t.Fatalf("%s is not the gin-atproto/oauth-sessions checkout", root)
	}
	return root
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
