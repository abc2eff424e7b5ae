package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Loopback receives the browser's redirect on a loopback port, as RFC 8252
// section 7.3 describes for desktop apps: it listens on 127.0.0.1 (an IP
// literal, not "localhost", which could resolve elsewhere) on a port the OS
// picks, for one redirect only.
type Loopback struct {
	RedirectURI string // http://127.0.0.1:<port><path>

	state  string
	srv    *http.Server
	result chan loopbackResult // the accepted redirect; capacity 1
	taken  atomic.Bool         // a redirect with the right state has come

	mu       sync.Mutex
	rejected int // redirects refused for a wrong or missing state
}

type loopbackResult struct {
	code string
	err  error
}

// ListenLoopback starts listening for the redirect to path that carries
// state.
func ListenLoopback(path, state string) (*Loopback, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on a loopback port for the redirect: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	lb := &Loopback{
		RedirectURI: "http://127.0.0.1:" + strconv.Itoa(port) + path,
		state:       state,
		result:      make(chan loopbackResult, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(path, lb.handle)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	lb.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() { _ = lb.srv.Serve(ln) }()
	return lb, nil
}

// handle accepts the first redirect whose state is this login's and
// answers the browser with a page saying it can be closed. Later ones, and
// ones with another state (a redirect this app did not ask for), are
// refused and change nothing.
func (lb *Loopback) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(lb.state)) != 1 {
		lb.mu.Lock()
		lb.rejected++
		lb.mu.Unlock()
		writePage(w, http.StatusBadRequest, "This is not the login in progress",
			"The app did not start this login, so it ignored it. You can close this window.")
		return
	}
	if !lb.taken.CompareAndSwap(false, true) {
		writePage(w, http.StatusGone, "This login is already done",
			"The app has received its login already. You can close this window.")
		return
	}
	var res loopbackResult
	switch code := q.Get("code"); {
	case q.Get("error") != "":
		res.err = fmt.Errorf("the login did not complete: the backend says %s", printable(q.Get("error")))
	case code == "":
		res.err = errors.New("the redirect carries no code")
	default:
		res.code = code
	}
	lb.result <- res
	if res.err != nil {
		writePage(w, http.StatusOK, "Login not completed",
			"The login was cancelled or failed; the app says why. You can close this window.")
		return
	}
	writePage(w, http.StatusOK, "You are logged in",
		"You can close this window and return to the app.")
}

// Wait waits for the redirect, at most timeout, and returns its code.
func (lb *Loopback) Wait(ctx context.Context, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case res := <-lb.result:
		return res.code, res.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the browser: %w", ctx.Err())
	case <-t.C:
		lb.mu.Lock()
		n := lb.rejected
		lb.mu.Unlock()
		msg := fmt.Sprintf("the browser did not come back within %v", timeout)
		if n > 0 {
			msg += fmt.Sprintf(" (%d redirect(s) with another state were ignored)", n)
		}
		return "", errors.New(msg)
	}
}

// Close stops listening, after the page in flight has been sent.
func (lb *Loopback) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := lb.srv.Shutdown(ctx); err != nil {
		_ = lb.srv.Close()
	}
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">
<h1>{{.Title}}</h1>
<p>{{.Text}}</p>
</body></html>
`))

// writePage answers the browser with a small page. Its URL holds the code:
// no-store keeps it out of the cache, no-referrer out of any later request,
// and the page has nothing to load.
func writePage(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct{ Title, Text string }{title, text})
}

// printable keeps an error code from the redirect fit for a terminal.
func printable(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-. ", r) {
			return r
		}
		return '?'
	}, s)
}

// PrintOnly is the Browser for headless use: the URL has been printed
// already; the user opens it in a browser on this machine.
func PrintOnly(context.Context, string) error { return nil }

// SystemBrowser opens the URL with the OS's URL opener (open on macOS,
// rundll32's FileProtocolHandler on Windows, xdg-open elsewhere) and says
// so on w. When that fails the login goes on: the URL has been printed.
func SystemBrowser(w io.Writer) Browser {
	return func(_ context.Context, authURL string) error {
		name, args := browserCommand(runtime.GOOS, authURL)
		cmd := exec.Command(name, args...)
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(w, "    (could not start %s: %v; open the URL above yourself)\n", name, err)
			return nil
		}
		go func() { _ = cmd.Wait() }() // reap it; some openers stay until the browser exits
		fmt.Fprintf(w, "    (asked %s to open it in the system browser)\n", name)
		return nil
	}
}

// browserCommand is the command that opens u in the system browser on goos.
func browserCommand(goos, u string) (string, []string) {
	switch goos {
	case "darwin":
		return "open", []string{u}
	case "windows":
		return "rundll32", []string{"url.dll,FileProtocolHandler", u}
	default: // linux, the BSDs
		return "xdg-open", []string{u}
	}
}
