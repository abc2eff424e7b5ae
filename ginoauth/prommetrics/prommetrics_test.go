package prommetrics_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/ginoauth/ginoauthtest"
	"github.com/gin-atproto/oauth-sessions/ginoauth/prommetrics"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
)

// The adapter implements the Manager's Metrics interface without importing
// the Gin-facing package.
var (
	_ ginoauth.Metrics          = (*prommetrics.Metrics)(nil)
	_ ginoauth.RateLimitMetrics = (*prommetrics.Metrics)(nil)
)

// TestMetricsOfARealApp wires the adapter the way the package doc says,
// runs a login, session checks, a token refresh and a storage outage
// through a real app, and reads the registry back.
func TestMetricsOfARealApp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := prommetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	as := ginoauthtest.New(t, ginoauthtest.Options{})
	as.CreateAccount(ginoauthtest.Account{Handle: "alice.test"})
	app := apptest.New(t, apptest.Options{
		HTTPClient: as.HTTPClient(), Directory: as.Directory(), Consent: as.Consent,
		RefreshMetrics: m,
		Configure: func(c *ginoauth.Config) {
			c.Metrics = m
			c.RateLimits.LoginStarts = 1 // the login below spends it
		},
	})
	br := app.NewBrowser()
	br.Login("alice.test", "/")
	if r := br.Get("/api/session"); r.Status != http.StatusOK {
		t.Fatalf("session: %d %s", r.Status, r.Body)
	}
	anon := app.NewBrowser()
	anon.Get("/dashboard")
	as.ExpireAccessTokens()
	if r := br.Get("/api/pds-session"); r.Status != http.StatusOK {
		t.Fatalf("PDS call through a refresh: %d %s", r.Status, r.Body)
	}
	app.Store.Down.Store(true)
	if r := br.Get("/api/session"); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("session with storage down: %d %s", r.Status, r.Body)
	}
	app.Store.Down.Store(false)
	if r := anon.Get("/login?handle=alice.test"); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a second login start from the address: %d %s", r.Status, r.Body)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string, labels map[string]string) uint64 {
		t.Helper()
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			var n uint64
			for _, mt := range f.GetMetric() {
				if !hasLabels(mt, labels) {
					continue
				}
				switch {
				case mt.Counter != nil:
					n += uint64(mt.Counter.GetValue())
				case mt.Histogram != nil:
					n += mt.Histogram.GetSampleCount()
				}
			}
			return n
		}
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    uint64
	}{
		{"ginoauth_logins_started_total", map[string]string{"kind": "web"}, 1},
		{"ginoauth_logins_finished_total", map[string]string{"code": "ok"}, 1},
		{"ginoauth_login_callback_seconds", nil, 1},
		{"ginoauth_session_check_seconds", map[string]string{"outcome": "ok"}, 1},
		{"ginoauth_session_check_seconds", map[string]string{"outcome": "anonymous"}, 1},
		{"ginoauth_session_check_seconds", map[string]string{"outcome": string(ginoauth.CodeStorageUnavailable)}, 1},
		{"ginoauth_storage_failures_total", map[string]string{"op": "get"}, 1},
		{"ginoauth_token_refresh_seconds", map[string]string{"outcome": "ok"}, 1},
		{"ginoauth_refresh_lock_wait_seconds", nil, 1},
		{"ginoauth_rate_limited_total", map[string]string{"limit": "login_start"}, 1},
	} {
		if got := count(c.name, c.labels); got < c.min {
			t.Errorf("%s%v = %d, want at least %d", c.name, c.labels, got, c.min)
		}
	}
	if got := count("ginoauth_token_refresh_seconds", map[string]string{"outcome": "ok"}); got != 1 {
		t.Errorf("one expiry makes one refresh grant, the metric says %d", got)
	}
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestNewRefusesADoubleRegistration: two adapters on one registry would
// collide; New says so instead of panicking.
func TestNewRefusesADoubleRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := prommetrics.New(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := prommetrics.New(reg); err == nil {
		t.Fatal("a second New on the same registry succeeded")
	}
}
