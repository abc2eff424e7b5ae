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

	"github.com/chromedp/chromedp"
)

// chromiumPath returns the Chromium to drive, or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("Chromium not found at %s (set CHROMIUM, or run examples/browsertest/run.sh, which installs it): %v", chromium, err)
	}
	return chromium
}

// buildExample builds ./examples/<name> of the checkout as a user would,
// into dir, and returns the binary's path.
func buildExample(t *testing.T, root, name, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	start := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./examples/"+name)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/%s: %v\n%s", name, err, out)
	}
	t.Logf("built examples/%s in %v", name, time.Since(start).Round(time.Millisecond))
	return bin
}

// process is an example app running as its own process.
type process struct {
	cmd    *exec.Cmd
	done   chan error
	lines  chan string // stdout, line by line
	stderr syncBuffer

	mu      sync.Mutex
	stopped bool
	err     error
}

// startProcess runs bin in dir with env added to the environment. The test
// stops it (SIGINT) when it ends, if it has not already.
func startProcess(t *testing.T, bin, dir string, env ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), done: make(chan error, 1), lines: make(chan string, 100)}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is reading any more
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.stop() })
	return p
}

// waitLine returns the first stdout line that match accepts (with what it
// returns), failing the test if the process exits or a minute passes.
func (p *process) waitLine(t *testing.T, match func(string) (string, bool)) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line := <-p.lines:
			if v, ok := match(line); ok {
				return v
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the app exited before serving: %v\n%s", err, p.stderr.String())
		case <-timeout:
			t.Fatalf("the app printed no such line within a minute\n%s", p.stderr.String())
		}
	}
}

// stop sends SIGINT (Ctrl+C) and waits for the process to exit.
func (p *process) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return p.err
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case p.err = <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.err = fmt.Errorf("no exit 20s after SIGINT")
	}
	return p.err
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
		chromedp.WindowSize(1280, 900),
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

// secondBrowser opens a tab in a new browser context of the same Chromium:
// its own cookies, like a second browser of the same person.
func secondBrowser(t *testing.T, ctx context.Context) context.Context {
	bctx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("open a second browser context: %v", err)
	}
	return bctx
}

// watchConsole collects script exceptions, console errors and browser log
// errors (CSP violations, failed loads) from every page of ctx's tab.
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

// setWidth makes the page's window width px wide (900 px tall), as a
// browser window of that size would be.
func setWidth(t *testing.T, ctx context.Context, px int64) {
	t.Helper()
	do(t, ctx, fmt.Sprintf("set the window to %d px", px), chromedp.EmulateViewport(px, 900))
	if w := get(t, ctx, "read the window width", chromedp.Evaluate[int64](`window.innerWidth`)); w != px {
		t.Fatalf("window.innerWidth = %d, want %d", w, px)
	}
}

// layoutJS lists what sticks out: the page wider than the window, an
// element whose right edge is past the window, or a box whose content is
// wider than the box (text that does not wrap). Form fields are left out:
// their text scrolls inside them by design.
const layoutJS = `(() => {
  const out = [];
  const vw = window.innerWidth;
  const de = document.documentElement;
  if (de.scrollWidth > vw) out.push("page: document.documentElement.scrollWidth " + de.scrollWidth + " > window.innerWidth " + vw);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : "");
  for (const el of document.body.querySelectorAll("*")) {
    if (["INPUT", "TEXTAREA", "SELECT", "OPTION"].includes(el.tagName)) continue;
    const st = getComputedStyle(el);
    if (st.display === "none") continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5) out.push(name(el) + ": right edge at " + Math.round(r.right) + " px, past the window");
    if (st.display !== "inline" && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) out.push(name(el) + ": content " + el.scrollWidth + " px wide in a " + el.clientWidth + " px box");
  }
  return out;
})()`

// checkLayout fails the test if anything on the page sticks out at the
// current width.
func checkLayout(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	problems := get(t, ctx, "measure the layout of "+what, chromedp.Evaluate[[]string](layoutJS))
	width := get(t, ctx, "read the window width", chromedp.Evaluate[int64](`window.innerWidth`))
	if len(problems) > 0 {
		t.Errorf("%s at %d px: the layout overflows:\n  %s", what, width, strings.Join(problems, "\n  "))
	}
}

// screenshots saves full-page PNGs to SCREENSHOT_DIR, by default
// examples/browsertest/artifacts (ignored by git): never into tracked files.
type screenshots struct{ dir string }

func newScreenshots(t *testing.T) screenshots {
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = "artifacts" // relative to this package's directory, where go test runs
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return screenshots{dir: dir}
}

// save takes a full-page screenshot of ctx's tab as <name>.png.
func (s screenshots) save(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "take the screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(s.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
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

// identityJS measures the account card's identity: whether the "Logged in"
// badge shows, and on how many lines each DID is drawn.
const identityJS = `(() => {
  const lines = (el) => { const r = document.createRange(); r.selectNodeContents(el); return new Set([...r.getClientRects()].map(c => Math.round(c.top))).size; };
  const pill = document.querySelector(".who .pill");
  const shown = pill && getComputedStyle(pill).display !== "none" && pill.getBoundingClientRect().width > 0;
  return [shown ? "badge shown" : "badge hidden", "names DID on " + lines(document.querySelector(".who code")) + " line(s)", "facts DID on " + lines(document.getElementById("user-did")) + " line(s)"];
})()`

// checkIdentity fails the test when, at the current width, the "Logged in"
// badge is hidden or a DID (a did:plc) breaks across lines.
func checkIdentity(t *testing.T, ctx context.Context) {
	t.Helper()
	got := get(t, ctx, "measure the identity", chromedp.Evaluate[[]string](identityJS))
	width := get(t, ctx, "read the window width", chromedp.Evaluate[int64](`window.innerWidth`))
	if want := []string{"badge shown", "names DID on 1 line(s)", "facts DID on 1 line(s)"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("account card at %d px: %v, want %v", width, got, want)
	}
}
