package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// ShutdownTimeout bounds how long Serve waits for requests in flight after
// Ctrl+C.
const ShutdownTimeout = 10 * time.Second

func init() {
	// Release mode: no route table or debug warnings on stdout. The
	// examples print their own banner and log through slog.
	gin.SetMode(gin.ReleaseMode)
}

// NewEngine returns a bare Gin engine for the examples: no default
// middleware (NewPages supplies it) and no trusted proxies, so
// c.ClientIP() cannot be spoofed with X-Forwarded-For. Behind a reverse
// proxy, call SetTrustedProxies with its address.
func NewEngine() *gin.Engine {
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	return r
}

// SignalContext returns a context that ends at the first Ctrl+C (SIGINT) or
// SIGTERM, which starts a graceful shutdown. After that first signal the
// default handling is back, so a second Ctrl+C ends the process at once.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// Serve serves h on ln until ctx is done (Ctrl+C or SIGTERM in main), then
// shuts down gracefully: it stops accepting connections and waits up to
// ShutdownTimeout for requests in flight. It returns nil after a clean
// shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "addr", ln.Addr().String())
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Banner is what an example prints once it is listening.
type Banner struct {
	URLs    []string // where to open the app, one per instance
	Network *Network
	Storage string // one line about the storage, e.g. "SQLite file /path/sessions.db"
	// Native lists the native apps' registered redirect URIs
	// (Config.MobileRedirectURIs); when set, the banner names the
	// native-app routes and how to try them with examples/native.
	Native []string
	// Metrics, if set, is the path of the Prometheus metrics (/metrics).
	Metrics string
}

// Print writes the banner: where to open the app, which account to use
// offline, where the data is, the native-app routes if they are on, and
// how to stop.
func (b Banner) Print(w io.Writer) {
	var sb strings.Builder
	sb.WriteString("\nginoauth demo is running.\n\n")
	for i, u := range b.URLs {
		label := "Open:"
		if len(b.URLs) > 1 {
			label = fmt.Sprintf("Open #%d:", i+1)
		}
		fmt.Fprintf(&sb, "  %-10s %s\n", label, u)
	}
	if b.Network != nil {
		if b.Network.IsLocal() {
			fmt.Fprintf(&sb, "  %-10s %s (%s), or bob.test; click Approve on the consent page (no password)\n", "Log in as:", DemoAccount.Handle, DemoAccount.DisplayName)
		} else {
			fmt.Fprintf(&sb, "  %-10s your handle, e.g. you.bsky.social\n", "Log in as:")
		}
		fmt.Fprintf(&sb, "  %-10s %s\n", "Network:", b.Network.Describe())
	}
	if b.Storage != "" {
		fmt.Fprintf(&sb, "  %-10s %s\n", "Storage:", b.Storage)
	}
	if b.Metrics != "" && len(b.URLs) > 0 {
		line := b.URLs[0] + b.Metrics + " (Prometheus)"
		if len(b.URLs) > 1 {
			line = b.Metrics + " on every instance, e.g. " + line
		}
		fmt.Fprintf(&sb, "  %-10s %s\n", "Metrics:", line)
	}
	if len(b.Native) > 0 {
		// The library's default paths (Config.Routes), which the examples use.
		indent := strings.Repeat(" ", 13)
		fmt.Fprintf(&sb, "  %-10s app logins on; registered redirect URIs: %s\n", "Native:", strings.Join(b.Native, " "))
		sb.WriteString(indent + "POST /api/auth/mobile-start, POST /api/auth/mobile-token,\n")
		sb.WriteString(indent + "POST /api/auth/mobile-refresh, GET /mobile/refresh-token, POST /api/logout (Bearer)\n")
		try := "go run ./examples/native"
		if len(b.URLs) > 0 && b.URLs[0] != "http://"+DefaultAddr {
			try = "BACKEND_URL=" + b.URLs[0] + " " + try
		}
		sb.WriteString(indent + "try it: " + try + "\n")
	}
	fmt.Fprintf(&sb, "  %-10s press Ctrl+C\n\n", "Stop:")
	_, _ = io.WriteString(w, sb.String())
}
