package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rowRun is one row's turn in one round.
type rowRun struct {
	res       loadResult
	rssKB     int64   // steady RSS of the server process under load (median of the second half's samples)
	otherCPU  float64 // share of the machine's CPU used by other processes during the measured load
	serverCPU float64 // share used by the server process
	dbCPU     float64 // share used by the database's processes (postgres, redis-server)
	retries   int     // runs discarded before this one because other processes were busy
	err       string
}

func (r *rowRun) ok() bool { return r != nil && r.err == "" }

// rowResult is everything measured for one row.
type rowResult struct {
	spec     rowSpec
	skip     string
	runs     []*rowRun // by round
	allocs   float64   // allocations per request through Gin, in process; -1: not measured
	allocErr string
}

type loginResult struct {
	store    string
	logins   int64
	seconds  float64
	p50, p99 time.Duration
	otherCPU float64 // other processes' share of the machine meanwhile
	retries  int
	err      string
}

type heapResult struct {
	sessions              int
	accounts              int
	heapBefore, heapAfter uint64
	objBefore, objAfter   uint64
	rssBefore, rssAfter   int64 // kB
	seconds               float64
	err                   string
}

type purgeResult struct {
	store                  string
	rows                   int
	fillSeconds            float64
	base, during           loadResult
	deleted                int64
	seconds                float64
	otherBase, otherDuring float64 // other processes' share of the machine meanwhile
	retries                int
	err                    string
}

// report is a whole run.
type report struct {
	o        options
	info     machineInfo
	tool     string
	rows     []*rowResult
	logins   []loginResult
	heap     *heapResult
	purges   []purgeResult
	notes    []string
	started  time.Time
	finished time.Time
	args     []string
}

func (h *harness) run(ctx context.Context, rows []rowSpec) *report {
	rep := &report{o: h.o, tool: h.load.name(), started: time.Now(), args: os.Args[1:]}
	for _, r := range rows {
		if r.needsNode() {
			h.installNode(ctx)
			if h.nodeWhy != "" {
				log.Printf("Node anchor unavailable, its rows are skipped: %s", h.nodeWhy)
			} else if out, err := exec.CommandContext(ctx, h.node, "--version").Output(); err == nil { //nolint:gosec // the Node that install.sh installed
				h.info.Node = "Node " + strings.TrimSpace(string(out))
			}
			break
		}
	}
	for _, r := range rows {
		rep.rows = append(rep.rows, &rowResult{spec: r, skip: h.skipReason(r), runs: make([]*rowRun, h.o.rounds), allocs: -1})
	}
	for _, rr := range rep.rows {
		if rr.skip != "" {
			log.Printf("skipping %s: %s", rr.spec.Name, rr.skip)
		}
	}
	perRow := h.o.warmup + h.o.duration + 2*time.Second
	active := 0
	for _, rr := range rep.rows {
		if rr.skip == "" {
			active++
		}
	}
	log.Printf("%d rows x %d rounds, about %s of load (load generator: %s)", active, h.o.rounds,
		(time.Duration(active*h.o.rounds) * perRow).Round(time.Second), h.load.name())

	for round := 0; round < h.o.rounds && ctx.Err() == nil; round++ {
		order := slices.Clone(rep.rows)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, rr := range order {
			if rr.skip != "" || ctx.Err() != nil {
				continue
			}
			run := h.measureRow(ctx, rr)
			for try := 1; try <= h.o.retries && ctx.Err() == nil && run.err == "" && run.otherCPU > h.o.busyMax; try++ {
				log.Printf("round %d %-34s other processes used %.0f%% of the CPU: measuring again (%d/%d)", round+1, rr.spec.Name, 100*run.otherCPU, try, h.o.retries)
				retried := h.measureRow(ctx, rr)
				retried.retries = try
				run = retried
			}
			rr.runs[round] = run
			if run.err != "" {
				log.Printf("round %d %-34s FAILED: %s", round+1, rr.spec.Name, run.err)
			} else {
				log.Printf("round %d %-34s %7.0f req/s  p50 %s  p99 %s  RSS %s  CPU: server %.0f%%, others %.0f%%", round+1, rr.spec.Name, run.res.RPS,
					fmtUs(run.res.P50us), fmtUs(run.res.P99us), fmtKB(run.rssKB), 100*run.serverCPU, 100*run.otherCPU)
			}
		}
	}

	if h.o.extras && ctx.Err() == nil {
		for _, st := range []string{storeMem, storeSQLite, storePostgres, storeRedis} {
			if ctx.Err() != nil {
				break
			}
			r, _ := rowByName("ginoauth/" + st)
			if why := h.skipReason(r); why != "" {
				rep.logins = append(rep.logins, loginResult{store: st, err: "skipped: " + why})
				continue
			}
			lr := h.loginThroughput(ctx, r)
			for try := 1; try <= h.o.retries && ctx.Err() == nil && lr.err == "" && lr.otherCPU > h.o.busyMax; try++ {
				log.Printf("  other processes used %.0f%% of the CPU: measuring again (%d/%d)", 100*lr.otherCPU, try, h.o.retries)
				lr = h.loginThroughput(ctx, r)
				lr.retries = try
			}
			rep.logins = append(rep.logins, lr)
		}
		if h.o.heapSessions > 0 && ctx.Err() == nil {
			rep.heap = h.heapPerSession(ctx)
		}
		if h.o.purgeRows > 0 {
			for _, st := range []string{storeSQLite, storePostgres} {
				if ctx.Err() != nil {
					break
				}
				r, _ := rowByName("ginoauth/" + st)
				if why := h.skipReason(r); why != "" {
					rep.purges = append(rep.purges, purgeResult{store: st, rows: h.o.purgeRows, err: "skipped: " + why})
					continue
				}
				pr := h.purgeUnderLoad(ctx, r, 0)
				for try := 1; try <= h.o.retries && ctx.Err() == nil && pr.err == "" && max(pr.otherBase, pr.otherDuring) > h.o.busyMax; try++ {
					log.Printf("  other processes used %.0f%% / %.0f%% of the CPU: measuring again (%d/%d)", 100*pr.otherBase, 100*pr.otherDuring, try, h.o.retries)
					pr = h.purgeUnderLoad(ctx, r, try)
				}
				rep.purges = append(rep.purges, pr)
			}
		}
	}
	rep.info = h.info
	rep.finished = time.Now()
	return rep
}

// measureRow runs one row once: a fresh server process, a login, a check
// that the login holds, the in-process allocation count (first time only),
// a warm-up, and the measured load with RSS samples.
func (h *harness) measureRow(ctx context.Context, rr *rowResult) *rowRun {
	run := &rowRun{}
	h.waitQuiet(ctx, rr.spec.Name)
	s, err := h.startServer(ctx, rr.spec, serverOpts{})
	if err != nil {
		run.err = err.Error()
		return run
	}
	defer s.stop()
	header, err := h.login(ctx, rr.spec, s)
	if err != nil {
		run.err = "login: " + err.Error()
		return run
	}
	target := s.appURL + rr.spec.Path
	if err := check(ctx, target, header); err != nil {
		run.err = err.Error()
		return run
	}
	if rr.allocs < 0 && rr.allocErr == "" && rr.spec.Kind != kindNode {
		var a struct{ Allocs float64 }
		if err := s.control(ctx, http.MethodGet, "/allocs?runs="+strconv.Itoa(h.o.allocRuns), http.Header{"X-Bench-Header": {header}}, &a); err != nil {
			rr.allocErr = err.Error()
		} else {
			rr.allocs = a.Allocs
		}
	}
	spec := loadSpec{url: target, header: header, conns: h.o.conns, threads: h.o.threads, d: h.o.warmup}
	if h.o.warmup > 0 {
		if _, err := h.load.run(ctx, spec); err != nil {
			run.err = "warm-up: " + err.Error()
			return run
		}
	}
	spec.d = h.o.duration
	stopRSS := sampleRSS(s)
	meter := startCPUMeter(s.pid(), rr.spec.needsPostgres() || rr.spec.needsRedis())
	res, err := h.load.run(ctx, spec)
	run.otherCPU, run.serverCPU, run.dbCPU = meter.foreign()
	run.rssKB = stopRSS()
	if err != nil {
		run.err = err.Error()
		return run
	}
	run.res = res
	if p := res.problem(); p != "" {
		run.err = p
	}
	return run
}

// sampleRSS samples the server's RSS every 200 ms until the returned
// function is called, which returns the median of the second half of the
// samples (the steady state under load).
func sampleRSS(s *server) func() int64 {
	var (
		mu      sync.Mutex
		samples []int64
	)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if v := s.rssKB(); v > 0 {
					mu.Lock()
					samples = append(samples, v)
					mu.Unlock()
				}
			}
		}
	}()
	return func() int64 {
		close(done)
		mu.Lock()
		defer mu.Unlock()
		if len(samples) == 0 {
			return s.rssKB()
		}
		tail := slices.Clone(samples[len(samples)/2:])
		slices.Sort(tail)
		return tail[len(tail)/2]
	}
}

// loginThroughput runs whole logins (GET /login with the pushed
// authorization request, approval at the authorization server, the
// callback with the code exchange and the new session) back to back from
// several clients for -login-duration.
func (h *harness) loginThroughput(ctx context.Context, r rowSpec) loginResult {
	lr := loginResult{store: r.Store}
	log.Printf("login throughput on %s (%d concurrent, %s) ...", r.Store, h.o.loginWorkers, h.o.loginDur)
	h.waitQuiet(ctx, "the logins")
	s, err := h.startServer(ctx, r, serverOpts{})
	if err != nil {
		lr.err = err.Error()
		return lr
	}
	defer s.stop()
	for i := range 20 { // warm-up: connections, code paths
		if _, err := h.loginGinoauth(ctx, s.appURL, accountHandle(i%max(1, h.o.accounts))); err != nil {
			lr.err = "warm-up login: " + err.Error()
			return lr
		}
	}
	meter := startCPUMeter(s.pid(), r.needsPostgres() || r.needsRedis())
	lat, n, secs, err := h.loginMany(ctx, s, 0, h.o.loginDur)
	lr.otherCPU, _, _ = meter.foreign()
	if err != nil {
		lr.err = err.Error()
		return lr
	}
	lr.logins, lr.seconds = n, secs
	lr.p50, lr.p99 = pctDur(lat, 50), pctDur(lat, 99)
	log.Printf("  %s: %.0f logins/s (p50 %s, p99 %s)", r.Store, float64(n)/secs, lr.p50.Round(10*time.Microsecond), lr.p99.Round(10*time.Microsecond))
	return lr
}

// loginMany runs logins from -login-workers clients until count logins are
// done (count > 0) or for d, rotating over the accounts.
func (h *harness) loginMany(ctx context.Context, s *server, count int64, d time.Duration) ([]time.Duration, int64, float64, error) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	accounts := int64(max(1, h.o.accounts))
	for range h.o.loginWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				if count <= 0 && time.Now().After(deadline) {
					return
				}
				i := next.Add(1)
				if count > 0 && i > count {
					return
				}
				t0 := time.Now()
				if _, err := h.loginGinoauth(ctx, s.appURL, accountHandle(int(i%accounts))); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
				if count > 0 && i%10_000 == 0 {
					log.Printf("  %d logins", i)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		return nil, 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	return lat, int64(len(lat)), secs, nil
}

// heapPerSession logs in -heap-sessions times (never logging out) on a
// memstore server and compares its live heap before and after.
func (h *harness) heapPerSession(ctx context.Context) *heapResult {
	hr := &heapResult{sessions: h.o.heapSessions, accounts: max(1, h.o.accounts)}
	log.Printf("heap per live session: %d logins on memstore over %d accounts ...", hr.sessions, hr.accounts)
	h.waitQuiet(ctx, "the logins")
	r, _ := rowByName("ginoauth/" + storeMem)
	s, err := h.startServer(ctx, r, serverOpts{})
	if err != nil {
		hr.err = err.Error()
		return hr
	}
	defer s.stop()
	// Warm-up with logins of their own, so pools, maps and code paths
	// exist before the first heap reading.
	for i := range 100 {
		if _, err := h.loginGinoauth(ctx, s.appURL, accountHandle(i%hr.accounts)); err != nil {
			hr.err = "warm-up login: " + err.Error()
			return hr
		}
	}
	var before, after struct {
		HeapAlloc   uint64 `json:"heap_alloc"`
		HeapObjects uint64 `json:"heap_objects"`
	}
	time.Sleep(time.Second) // background saves of the warm-up settle
	if err := s.control(ctx, http.MethodGet, "/heap", nil, &before); err != nil {
		hr.err = err.Error()
		return hr
	}
	hr.rssBefore = s.rssKB()
	t0 := time.Now()
	if _, _, _, err := h.loginMany(ctx, s, int64(hr.sessions), 0); err != nil {
		hr.err = err.Error()
		return hr
	}
	hr.seconds = time.Since(t0).Seconds()
	time.Sleep(time.Second)
	if err := s.control(ctx, http.MethodGet, "/heap", nil, &after); err != nil {
		hr.err = err.Error()
		return hr
	}
	hr.rssAfter = s.rssKB()
	hr.heapBefore, hr.heapAfter = before.HeapAlloc, after.HeapAlloc
	hr.objBefore, hr.objAfter = before.HeapObjects, after.HeapObjects
	log.Printf("  heap %s -> %s: %.0f bytes per session", fmtBytes(hr.heapBefore), fmtBytes(hr.heapAfter),
		(float64(hr.heapAfter)-float64(hr.heapBefore))/float64(hr.sessions))
	return hr
}

// purgeUnderLoad fills the store's table with -purge-rows expired rows,
// loads the session check without a purge (baseline), then loads it while
// the server runs gormstore's DeleteExpired, and stops the load when the
// purge returns. Both loads use the Go load generator, which records every
// latency and can stop at any moment.
func (h *harness) purgeUnderLoad(ctx context.Context, r rowSpec, attempt int) purgeResult {
	pr := purgeResult{store: r.Store, rows: h.o.purgeRows, retries: attempt}
	log.Printf("purge of %d expired rows under load on %s ...", pr.rows, r.Store)
	so := serverOpts{table: h.prefix + "_purge", sqlite: filepath.Join(h.tmp, "purge.db")}
	s, err := h.startServer(ctx, r, so)
	if err != nil {
		pr.err = err.Error()
		return pr
	}
	defer s.stop()
	header, err := h.login(ctx, r, s)
	if err != nil {
		pr.err = "login: " + err.Error()
		return pr
	}
	target := s.appURL + r.Path
	if err := check(ctx, target, header); err != nil {
		pr.err = err.Error()
		return pr
	}
	var fill struct{ Seconds float64 }
	if err := s.control(ctx, http.MethodPost, "/fill?n="+strconv.Itoa(pr.rows)+"&prefix=old"+strconv.Itoa(attempt)+":", nil, &fill); err != nil {
		pr.err = "fill: " + err.Error()
		return pr
	}
	pr.fillSeconds = fill.Seconds
	log.Printf("  filled in %.1fs; baseline load %s ...", fill.Seconds, h.o.purgeBase)
	h.waitQuiet(ctx, "the baseline")
	spec := loadSpec{url: target, header: header, conns: h.o.conns, threads: h.o.threads, d: h.o.purgeBase}
	g, err := h.goload.start(ctx, spec, time.Second)
	if err != nil {
		pr.err = err.Error()
		return pr
	}
	time.Sleep(time.Second)
	meter := startCPUMeter(s.pid(), r.needsPostgres())
	if pr.base, err = g.wait(); err != nil {
		pr.err = "baseline: " + err.Error()
		return pr
	}
	pr.otherBase, _, _ = meter.foreign()
	spec.d = 0
	h.waitQuiet(ctx, "the purge")
	g, err = h.goload.start(ctx, spec, time.Second)
	if err != nil {
		pr.err = err.Error()
		return pr
	}
	time.Sleep(time.Second) // the load generator's warm-up
	var purge struct {
		Deleted int64
		Seconds float64
	}
	meter = startCPUMeter(s.pid(), r.needsPostgres())
	perr := s.control(ctx, http.MethodPost, "/purge", nil, &purge)
	g.stop()
	during, werr := g.wait()
	pr.otherDuring, _, _ = meter.foreign()
	switch {
	case perr != nil:
		pr.err = "purge: " + perr.Error()
	case werr != nil:
		pr.err = "load during the purge: " + werr.Error()
	}
	pr.during, pr.deleted, pr.seconds = during, purge.Deleted, purge.Seconds
	if pr.err == "" {
		if p := pr.base.problem(); p != "" {
			pr.err = "baseline: " + p
		} else if p := pr.during.problem(); p != "" {
			pr.err = "during the purge: " + p
		}
	}
	log.Printf("  purged %d rows in %.1fs; p99 %s without, %s during", pr.deleted, pr.seconds, fmtUs(pr.base.P99us), fmtUs(pr.during.P99us))
	return pr
}

func pctDur(v []time.Duration, p float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p/100*float64(len(s))))]
}

// machineInfo describes where the run happened.
type machineInfo struct {
	CPU, Cores, Memory, OS, Kernel, Go, Wrk, Node, Postgres, Redis string
	Code                                                           string // the commit measured
}

func gatherMachineInfo(ctx context.Context, h *harness) machineInfo {
	mi := machineInfo{Cores: strconv.Itoa(runtime.NumCPU()), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				mi.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					mi.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				mi.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		mi.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	mi.Code = codeVersion(ctx)
	if w, ok := h.load.(*wrkTool); ok {
		out, _ := exec.CommandContext(ctx, w.bin, "-v").CombinedOutput()    //nolint:gosec // wrk from PATH
		if f := strings.Fields(string(out)); len(f) >= 2 && f[0] == "wrk" { // "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
			mi.Wrk = "wrk " + f[1]
		}
	}
	if h.pg != nil {
		var v string
		if err := h.pg.WithContext(ctx).Raw(`SHOW server_version`).Scan(&v).Error; err == nil {
			mi.Postgres = "PostgreSQL " + v
		}
	}
	if h.rdb != nil {
		if s, err := h.rdb.Info(ctx, "server").Result(); err == nil {
			for _, line := range strings.Split(s, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
					mi.Redis = "Redis " + v
				}
			}
		}
	}
	return mi
}

// codeVersion names the commit the harness was built from, and whether
// tracked files differed from it (git, run in the working directory).
func codeVersion(ctx context.Context) string {
	rev, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "commit " + strings.TrimSpace(string(rev))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		if n := len(strings.Split(strings.TrimSpace(string(st)), "\n")); strings.TrimSpace(string(st)) != "" {
			v += fmt.Sprintf(" with uncommitted changes in %d tracked files", n)
		} else {
			v += ", no uncommitted changes to tracked files"
		}
	}
	return v
}
