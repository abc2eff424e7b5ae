// Package prommetrics exposes the library's measurements as Prometheus
// metrics (github.com/prometheus/client_golang). The core packages do not
// depend on Prometheus, and this adapter links no web framework: it
// implements ginoauth.Metrics (whose methods take plain strings) and
// oauthclient.RefreshMetrics:
//
//	m, err := prommetrics.New(prometheus.DefaultRegisterer)
//	mgr, _ := ginoauth.New(ginoauth.Config{..., Metrics: m})
//	client := indigoclient.New(cfg, store, indigoclient.Options{Metrics: m})
//	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
//
// Metrics (all prefixed ginoauth_):
//
//	logins_started_total{kind}            logins sent to an authorization server (web, mobile, step_up)
//	logins_finished_total{code}           callbacks by outcome: ok or the failure's code
//	login_callback_seconds                how long callbacks took
//	session_check_seconds{outcome}        session checks (a histogram; _count is the number of checks)
//	storage_failures_total{op}            storage failures by operation
//	rate_limited_total{limit}             requests refused by the login rate limits (login_start, callback)
//	token_refresh_seconds{outcome}        token refresh grants: ok, refused, network, storage
//	refresh_lock_wait_seconds             how long refreshes waited for the cross-instance lock
//	keepalive_runs_total{outcome}         keep-alive runs (Config.KeepAlive): refreshed, not_due, gone, refused, network, storage
//	liveness_checks_total{outcome}        liveness checks (Config.LivenessCheckEvery): live, ended, gone, unknown
//
// Live sessions are not counted: across instances sharing a store there is
// no cheap, correct count.
package prommetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gin-atproto/oauth-sessions/ginoauth/oauthclient"
)

// Metrics is a ginoauth.Metrics (with its RateLimitMetrics capability) and
// an oauthclient.RefreshMetrics that records to Prometheus. Build it with
// New.
type Metrics struct {
	loginsStarted  *prometheus.CounterVec
	loginsFinished *prometheus.CounterVec
	callback       prometheus.Histogram
	checks         *prometheus.HistogramVec
	storage        *prometheus.CounterVec
	refreshes      *prometheus.HistogramVec
	lockWait       prometheus.Histogram
	keepAlive      *prometheus.CounterVec
	liveness       *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
}

var _ oauthclient.RefreshMetrics = (*Metrics)(nil)

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	fast := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
	slow := prometheus.DefBuckets
	m := &Metrics{
		loginsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_logins_started_total",
			Help: "Logins sent to an authorization server, by kind (web, mobile, step_up)."}, []string{"kind"}),
		loginsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_logins_finished_total",
			Help: "Login callbacks by outcome: ok, or the failure's code."}, []string{"code"}),
		callback: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ginoauth_login_callback_seconds",
			Help: "How long login callbacks took (code exchange included).", Buckets: slow}),
		checks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ginoauth_session_check_seconds",
			Help: "Session checks by outcome (ok, anonymous, a session error code, storage_unavailable).", Buckets: fast}, []string{"outcome"}),
		storage: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_storage_failures_total",
			Help: "Storage failures by operation."}, []string{"op"}),
		refreshes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ginoauth_token_refresh_seconds",
			Help: "OAuth token refresh grants by outcome (ok, refused, network, storage).", Buckets: slow}, []string{"outcome"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ginoauth_refresh_lock_wait_seconds",
			Help: "How long token refreshes waited for the cross-instance refresh lock.", Buckets: slow}),
		keepAlive: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_keepalive_runs_total",
			Help: "Keep-alive runs by outcome (refreshed, not_due, gone, refused, network, storage)."}, []string{"outcome"}),
		liveness: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_liveness_checks_total",
			Help: "Liveness checks of grants with their PDS by outcome (live, ended, gone, unknown)."}, []string{"outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ginoauth_rate_limited_total",
			Help: "Requests refused (429) by the login rate limits, by limit (login_start, callback)."}, []string{"limit"}),
	}
	for _, c := range []prometheus.Collector{m.loginsStarted, m.loginsFinished, m.callback, m.checks, m.storage, m.refreshes, m.lockWait, m.keepAlive, m.liveness, m.rateLimited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// LoginStarted implements ginoauth.Metrics.
func (m *Metrics) LoginStarted(kind string) { m.loginsStarted.WithLabelValues(kind).Inc() }

// LoginFinished implements ginoauth.Metrics.
func (m *Metrics) LoginFinished(code string, took time.Duration) {
	m.loginsFinished.WithLabelValues(code).Inc()
	m.callback.Observe(took.Seconds())
}

// SessionChecked implements ginoauth.Metrics.
func (m *Metrics) SessionChecked(outcome string, took time.Duration) {
	m.checks.WithLabelValues(outcome).Observe(took.Seconds())
}

// StorageFailed implements ginoauth.Metrics.
func (m *Metrics) StorageFailed(op string) { m.storage.WithLabelValues(op).Inc() }

// RateLimited implements ginoauth.RateLimitMetrics.
func (m *Metrics) RateLimited(limit string) { m.rateLimited.WithLabelValues(limit).Inc() }

// RefreshLockWaited implements oauthclient.RefreshMetrics.
func (m *Metrics) RefreshLockWaited(took time.Duration) { m.lockWait.Observe(took.Seconds()) }

// RefreshFinished implements oauthclient.RefreshMetrics.
func (m *Metrics) RefreshFinished(outcome string, took time.Duration) {
	m.refreshes.WithLabelValues(outcome).Observe(took.Seconds())
}

// KeepAliveRan counts a keep-alive run by outcome; the Manager calls it on
// a Metrics that has it (ginoauth.Config.KeepAlive).
func (m *Metrics) KeepAliveRan(outcome string) { m.keepAlive.WithLabelValues(outcome).Inc() }

// LivenessChecked counts a liveness check by outcome; the Manager calls it
// on a Metrics that has it (Config.LivenessCheckEvery).
func (m *Metrics) LivenessChecked(outcome string) { m.liveness.WithLabelValues(outcome).Inc() }
