package ginoauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-atproto/oauth-sessions/ginoauth"
	"github.com/gin-atproto/oauth-sessions/internal/apptest"
	"github.com/gin-atproto/oauth-sessions/internal/testdb"
)

// The flood test: one address floods the login start (naming the
// victim's handle) and the callback (with random states) at a fixed rate,
// from several connections, while other addresses log in. With the
// default limits the flooder is refused past its limit, the number of
// pushed authorization requests reaching the authorization server stays
// within that limit, and another address's login takes at most twice its
// normal time (medians). The same flood against the limits turned off is
// run for comparison. Everything is real and on loopback: the app, the
// authorization server, TCP connections from distinct 127.0.0.x
// addresses.
//
// The machine is shared, so the normal and the flooded logins are measured
// in turns (the flood paused for one, running for the next), and their
// medians compared: a change in the machine's load hits both alike. Under
// the race detector (go test -race ./...), which multiplies the cost of
// every request, only the bounds on the flooder are checked, on the memory
// store alone; CI runs the whole test without it (.ci/run). The figures
// are logged:
//
//	go test -run TestLoginFloodDoesNotSlowOthers -count=1 -v ./ginoauth/
const (
	floodConns    = 8   // the flooder's concurrent connections
	floodRate     = 500 // the flooder's requests per second while it runs (half starts, half callbacks)
	victimLogins  = 20  // measured logins, each way
	floodAttempts = 3   // the latency bound must hold in one of these (the machine is shared)
)

func TestLoginFloodDoesNotSlowOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	needLoopbackAddresses(t)
	backends := []testdb.Backend{testdb.All()[0], testdb.All()[1]} // memory, SQLite
	if raceDetector {
		backends = backends[:1]
	}
	for _, be := range backends {
		t.Run(be.Name, func(t *testing.T) {
			a := newTestApp(t, be.New(t)) // the default limits; the app's clock stands still: one window
			host := 3                     // other addresses: 127.0.0.3, .4, ...
			victim := func(app *testApp) *addrBrowser {
				b := newAddrBrowser(t, fmt.Sprintf("127.0.0.%d", host), app.Server.URL, a.as)
				host++
				b.mustLogin("alice.test") // warm-up: connection, code paths
				return b
			}
			flooder := newAddrBrowser(t, "127.0.0.2", a.Server.URL, a.as)
			var total floodCounts
			for attempt := 1; attempt <= floodAttempts; attempt++ {
				calm, stormy := victim(a), victim(a)
				parsBefore := a.as.Stats().PARs
				f := startFlood(flooder)
				f.waitLimited(t)
				normal, flooded := measureInTurns(t, f, calm, stormy)
				counts := f.stop()
				floodPARs := a.as.Stats().PARs - parsBefore - 2*victimLogins
				total.add(counts)

				ratio := float64(median(flooded)) / float64(median(normal))
				t.Logf("%s, attempt %d: flood of %d requests: starts %d let through, %d refused (429); callbacks %d answered, %d refused",
					be.Name, attempt, counts.sent(), counts.startsOK, counts.starts429, counts.callbacksOK, counts.callbacks429)
				t.Logf("%s, attempt %d: pushed authorization requests for the flood: %d (limit 30 per window; the flooder's total %d)",
					be.Name, attempt, floodPARs, total.startsOK)
				t.Logf("%s, attempt %d: another address's login: p50 %v normal, %v under the flood (x%.2f); p90 %v, %v",
					be.Name, attempt, median(normal).Round(10*time.Microsecond), median(flooded).Round(10*time.Microsecond), ratio,
					pct(normal, 90).Round(10*time.Microsecond), pct(flooded, 90).Round(10*time.Microsecond))

				// The bounds on the flooder hold on every attempt.
				if counts.other != 0 {
					t.Fatalf("the flood got %d answers other than a redirect, 400 or 429", counts.other)
				}
				if total.startsOK > 30 || total.callbacksOK > 60 {
					t.Fatalf("the flooder got %d starts and %d callbacks through in one window; the limits are 30 and 60", total.startsOK, total.callbacksOK)
				}
				if floodPARs > 30 {
					t.Fatalf("%d pushed authorization requests reached the server for the flood; the limit is 30", floodPARs)
				}
				if counts.starts429 == 0 || counts.callbacks429 == 0 {
					t.Fatalf("the flooder was never refused: %+v", counts)
				}
				if ratio <= 2 || raceDetector {
					break
				}
				if attempt == floodAttempts {
					t.Fatalf("another address's login took x%.2f its normal time under the flood, in each of %d attempts; want at most x2", ratio, floodAttempts)
				}
			}

			if raceDetector {
				return
			}
			// For comparison: the same flood with the limits off.
			off := startApp(t, a.as, func(o *apptest.Options) {
				o.Storage = be.New(t)
				o.Configure = func(c *ginoauth.Config) { c.RateLimits.Disabled = true }
			})
			calm, stormy := victim(off), victim(off)
			parsBefore := a.as.Stats().PARs
			f := startFlood(newAddrBrowser(t, "127.0.0.2", off.Server.URL, a.as))
			normal, flooded := measureInTurns(t, f, calm, stormy)
			counts := f.stop()
			floodPARs := a.as.Stats().PARs - parsBefore - 2*victimLogins
			t.Logf("%s, limits off: flood of %d requests, %d starts let through; %d pushed authorization requests for the flood; another address's login p50 %v normal, %v under the flood (x%.2f)",
				be.Name, counts.sent(), counts.startsOK, floodPARs,
				median(normal).Round(10*time.Microsecond), median(flooded).Round(10*time.Microsecond), float64(median(flooded))/float64(median(normal)))
			if floodPARs <= 30 {
				t.Errorf("with the limits off the flood sent only %d pushed authorization requests: the flood is too weak to show anything", floodPARs)
			}
		})
	}
}

// measureInTurns measures victimLogins logins from calm with the flood
// paused, and as many from stormy with it running, one after the other.
func measureInTurns(t *testing.T, f *flood, calm, stormy *addrBrowser) (normal, flooded []time.Duration) {
	t.Helper()
	for range victimLogins {
		f.paused.Store(true)
		time.Sleep(20 * time.Millisecond) // the flood's requests in flight are answered
		normal = append(normal, mustTime(t, calm))
		f.paused.Store(false)
		time.Sleep(20 * time.Millisecond) // the flood is under way again
		flooded = append(flooded, mustTime(t, stormy))
	}
	return normal, flooded
}

func mustTime(t *testing.T, b *addrBrowser) time.Duration {
	t.Helper()
	d, err := b.login("alice.test")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func median(ds []time.Duration) time.Duration { return pct(ds, 50) }

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// floodCounts are the answers a flood got.
type floodCounts struct {
	startsOK, starts429, callbacksOK, callbacks429, other int
	took                                                  time.Duration
}

func (c floodCounts) sent() int {
	return c.startsOK + c.starts429 + c.callbacksOK + c.callbacks429 + c.other
}

func (c *floodCounts) add(o floodCounts) {
	c.startsOK += o.startsOK
	c.starts429 += o.starts429
	c.callbacksOK += o.callbacksOK
	c.callbacks429 += o.callbacks429
	c.other += o.other
	c.took += o.took
}

type flood struct {
	paused atomic.Bool // workers skip their turns while it is set
	stopCh chan struct{}
	wg     sync.WaitGroup
	began  time.Time
	mu     sync.Mutex
	counts floodCounts
	errs   atomic.Int64
}

// startFlood sends, from b, floodRate requests a second over floodConns
// connections: login starts naming the victim's handle, and callbacks
// with random states, in turn.
func startFlood(b *addrBrowser) *flood {
	f := &flood{stopCh: make(chan struct{}), began: time.Now()}
	interval := time.Second * floodConns / floodRate
	for w := range floodConns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-f.stopCh:
					return
				case <-tick.C:
				}
				if f.paused.Load() {
					continue
				}
				start := (i+w)%2 == 0
				var st int
				var err error
				if start {
					st, _, err = b.do(http.MethodPost, "/login", url.Values{"handle": {"alice.test"}})
				} else {
					st, _, err = b.do(http.MethodGet, "/oauth/callback?code=x&iss=y&state="+randomURLString(16), nil)
				}
				if err != nil {
					if !isStopping(f.stopCh) {
						f.errs.Add(1)
					}
					continue
				}
				f.mu.Lock()
				switch {
				case start && st == http.StatusFound:
					f.counts.startsOK++
				case start && st == http.StatusTooManyRequests:
					f.counts.starts429++
				case !start && st == http.StatusBadRequest:
					f.counts.callbacksOK++
				case !start && st == http.StatusTooManyRequests:
					f.counts.callbacks429++
				default:
					f.counts.other++
				}
				f.mu.Unlock()
			}
		}()
	}
	return f
}

func isStopping(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitLimited waits until the flooder has been refused at the login start
// and at the callback (it has spent its limits): the other address's
// logins are then measured against the flood as it goes on for the rest
// of the window.
func (f *flood) waitLimited(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		f.mu.Lock()
		c := f.counts
		f.mu.Unlock()
		if c.starts429 > 0 && c.callbacks429 > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooder was not limited within a minute: %+v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *flood) stop() floodCounts {
	close(f.stopCh)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts.took = time.Since(f.began)
	f.counts.other += int(f.errs.Load())
	return f.counts
}
