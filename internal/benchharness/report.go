package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtUs(us float64) string {
	switch {
	case math.IsNaN(us):
		return "–"
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	default:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
}

func fmtKB(kb int64) string {
	if kb <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
}

// cpuPerRequest is the CPU time per request, in µs, of a process group that
// used share of the machine's CPUs while serving rps requests a second.
func cpuPerRequest(share, rps float64) float64 {
	if rps <= 0 {
		return math.NaN()
	}
	return share * float64(runtime.NumCPU()) * 1e6 / rps
}

func fmtCPU(us float64) string {
	if math.IsNaN(us) {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", us)
}

func fmtBytes(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (rep *report) row(name string) *rowResult {
	for _, r := range rep.rows {
		if r.spec.Name == name {
			return r
		}
	}
	return nil
}

// pairRatios is, per round where both ran cleanly, a's requests/s over b's.
func (rep *report) pairRatios(a, b string) []float64 {
	ra, rb := rep.row(a), rep.row(b)
	if ra == nil || rb == nil {
		return nil
	}
	var out []float64
	for i := range ra.runs {
		if ra.runs[i].ok() && rb.runs[i].ok() && rb.runs[i].res.RPS > 0 {
			out = append(out, ra.runs[i].res.RPS/rb.runs[i].res.RPS)
		}
	}
	return out
}

// stat is the median over a row's clean rounds of f.
func (r *rowResult) stat(f func(*rowRun) float64) float64 {
	var v []float64
	for _, run := range r.runs {
		if run.ok() {
			v = append(v, f(run))
		}
	}
	return median(v)
}

func (r *rowResult) clean() int {
	n := 0
	for _, run := range r.runs {
		if run.ok() {
			n++
		}
	}
	return n
}

// target is one goal, its figure and whether it is met (nil: not measured).
type target struct {
	goal, figure string
	met          *bool
}

func cmp(v float64, ok func(float64) bool) *bool {
	if math.IsNaN(v) {
		return nil
	}
	b := ok(v)
	return &b
}

func (rep *report) targets() []target {
	ratio := func(name string) float64 { return median(rep.pairRatios(name, bareRow)) }
	allocsCheck := func(name string) float64 {
		r, bare := rep.row(name), rep.row(bareRow)
		if r == nil || bare == nil || r.allocs < 0 || bare.allocs < 0 {
			return math.NaN()
		}
		return r.allocs - bare.allocs
	}
	var ts []target
	add := func(goal string, v float64, format string, ok func(float64) bool) {
		fig := "not measured"
		if !math.IsNaN(v) {
			fig = fmt.Sprintf(format, v)
		}
		ts = append(ts, target{goal, fig, cmp(v, ok)})
	}
	stores := []string{storeMem, storeSQLite, storePostgres, storeRedis}
	add("ginoauth/memstore ≥ 0.85 of bare Gin", ratio("ginoauth/memstore"), "%.2f", func(v float64) bool { return v >= 0.85 })
	for _, st := range stores {
		add("ginoauth/"+st+"+cache ≥ 0.85 of bare Gin", ratio("ginoauth/"+st+"+cache"), "%.2f", func(v float64) bool { return v >= 0.85 })
	}
	add("≤ 12 allocs per check beyond bare Gin's, memstore", allocsCheck("ginoauth/memstore"), "%.0f", func(v float64) bool { return v <= 12 })
	add("≤ 12 allocs per check beyond bare Gin's, memstore+cache", allocsCheck("ginoauth/memstore+cache"), "%.0f", func(v float64) bool { return v <= 12 })
	add("ginoauth/sqlitestore ≥ 0.6 of bare Gin", ratio("ginoauth/sqlitestore"), "%.2f", func(v float64) bool { return v >= 0.6 })
	add("ginoauth/postgresstore ≥ 0.35 of bare Gin (no cache)", ratio("ginoauth/postgresstore"), "%.2f", func(v float64) bool { return v >= 0.35 })
	for _, st := range stores {
		add("IdleTimeout, the client keeps the resealed cookie: within 5% of off, "+st+" (req/s on / off, same round)",
			median(rep.pairRatios("ginoauth/"+st+"+idle", "ginoauth/"+st)), "%.2f", func(v float64) bool { return v >= 0.95 })
		add("IdleTimeout, the client resends an older cookie: within 10% of off, "+st+" (req/s on / off, same round)",
			median(rep.pairRatios("ginoauth/"+st+"+idle+old-cookie", "ginoauth/"+st)), "%.2f", func(v float64) bool { return v >= 0.9 })
	}
	for _, st := range stores {
		add("five accounts in the browser's cookie: within 5% of one, "+st+" (req/s five / one, same round)",
			median(rep.pairRatios("ginoauth/"+st+"+5-accounts", "ginoauth/"+st)), "%.2f", func(v float64) bool { return v >= 0.95 })
	}
	// "No more than a cookie check": within the rounds' noise (3%).
	for _, st := range stores {
		add("a native app's bearer check costs no more than a cookie check, "+st+" (req/s bearer / cookie, same round)",
			median(rep.pairRatios("ginoauth/"+st+"+bearer", "ginoauth/"+st)), "%.2f", func(v float64) bool { return v >= 0.97 })
	}
	for _, st := range []string{storeMem, storeSQLite} {
		bearer, cookie := allocsCheck("ginoauth/"+st+"+bearer"), allocsCheck("ginoauth/"+st)
		add("a bearer check allocates no more than a cookie check, "+st+" (allocs bearer − cookie)", bearer-cookie, "%+.0f", func(v float64) bool { return v <= 0 })
	}
	for _, st := range []string{storeSQLite, storePostgres} {
		v := math.NaN()
		for _, p := range rep.purges {
			if p.store == st && p.err == "" && p.base.P99us > 0 {
				v = p.during.P99us / p.base.P99us
			}
		}
		add("p99 during a 1M-row cleanup within 2× of without, "+st+" (p99 during / without)", v, "%.2f×", func(v float64) bool { return v <= 2 })
	}
	// The anchor is the Deno library's stack as it runs per
	// request: unseal, then re-seal with the new lastAccessed.
	add("≥ 9× the Deno library's stack (deno-stack+reseal), sqlitestore (req/s, same round)", median(rep.pairRatios("ginoauth/sqlitestore", "deno-stack+reseal")), "%.1f×", func(v float64) bool { return v >= 9 })
	add("≥ 15× the Deno library's stack (deno-stack+reseal), memstore (req/s, same round)", median(rep.pairRatios("ginoauth/memstore", "deno-stack+reseal")), "%.1f×", func(v float64) bool { return v >= 15 })
	return ts
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := rep.o
	mi := rep.info
	p("## Results of %s\n\n", rep.started.Format("2006-01-02 15:04 MST"))
	p("Command: `go run ./internal/benchharness%s` (finished in %s).", argString(rep.args), rep.finished.Sub(rep.started).Round(time.Second))
	if mi.Code != "" {
		p(" Code: %s.", mi.Code)
	}
	p("\n\n")
	p("Machine: %s, %s cores, %s RAM; %s (%s); %s", mi.CPU, mi.Cores, mi.Memory, mi.OS, mi.Kernel, mi.Go)
	for _, s := range []string{mi.Wrk, mi.Node, mi.Postgres, mi.Redis} {
		if s != "" {
			p("; %s", s)
		}
	}
	p(".\n\n")
	loadDesc := fmt.Sprintf("%s, %d threads, %d connections", rep.tool, o.threads, o.conns)
	if rep.tool != "wrk" {
		loadDesc = fmt.Sprintf("%s, %d connections", rep.tool, o.conns)
	}
	p("Method: %d alternating rounds (every other round in reverse order); in each, every row in a fresh server process on loopback, "+
		"logged in once, %s of warm-up, then %s of load (%s, keep-alive, GET of the row's route with the client's credential (the session cookie; a native app's bearer token in the +bearer rows), "+
		"every answer checked to be 200). Ratio = the row's requests/s over bare Gin's in the same round, median over rounds (min–max in brackets). "+
		"req/s, p50, p99 and RSS are medians over rounds; RSS is the server process's resident set, sampled every 200 ms, median of the second half of the run. "+
		"allocs/req: testing.AllocsPerRun (%d runs) of one request through the server's Gin engine with httptest, in the server process; "+
		"allocs/check: the same minus bare Gin's. server CPU/req and database CPU/req: the CPU time the server process, and the Postgres or Redis processes, used during the load over the requests served (median over rounds). "+
		"The machine is shared: before each row the harness waits (up to %s) until other processes use at most %.0f%% of the CPU, "+
		"and measures a row again (at most %d more times) when they used more than %.0f%% during its run; what they used during each kept run is in the last table.\n\n",
		o.rounds, fmtDur(o.warmup), fmtDur(o.duration), loadDesc, o.allocRuns, fmtDur(o.quietWait), 100*o.quietMax, o.retries, 100*o.busyMax)

	p("| Row | Ratio to bare Gin | req/s | p50 | p99 | server CPU/req | database CPU/req | allocs/req | allocs/check | RSS under load |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	bare := rep.row(bareRow)
	for _, r := range rep.rows {
		if r.skip != "" {
			p("| %s | skipped: %s | | | | | | | | |\n", r.spec.Name, r.skip)
			continue
		}
		if r.clean() == 0 {
			p("| %s | failed in every round (see below) | | | | | | | | |\n", r.spec.Name)
			continue
		}
		rs := rep.pairRatios(r.spec.Name, bareRow)
		ratio := "–"
		if len(rs) > 0 {
			ratio = fmt.Sprintf("%.3f (%.3f–%.3f)", median(rs), slices.Min(rs), slices.Max(rs))
		}
		if r.spec.Name == bareRow {
			ratio = "1"
		}
		allocs, check := "–", "–"
		if r.allocs >= 0 {
			allocs = fmt.Sprintf("%.0f", r.allocs)
			if bare != nil && bare.allocs >= 0 && r.spec.Name != bareRow {
				check = fmt.Sprintf("%.0f", r.allocs-bare.allocs)
			}
		} else if r.allocErr != "" {
			allocs = "error"
		} else if r.spec.Kind == kindNode {
			allocs, check = "n/a", "n/a"
		}
		dbCPU := "–"
		if r.spec.needsPostgres() || r.spec.needsRedis() {
			dbCPU = fmtCPU(r.stat(func(x *rowRun) float64 { return cpuPerRequest(x.dbCPU, x.res.RPS) }))
		}
		p("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", r.spec.Name, ratio, r.stat(func(x *rowRun) float64 { return x.res.RPS }),
			fmtUs(r.stat(func(x *rowRun) float64 { return x.res.P50us })), fmtUs(r.stat(func(x *rowRun) float64 { return x.res.P99us })),
			fmtCPU(r.stat(func(x *rowRun) float64 { return cpuPerRequest(x.serverCPU, x.res.RPS) })), dbCPU,
			allocs, check, fmtKB(int64(r.stat(func(x *rowRun) float64 { return float64(x.rssKB) }))))
	}
	p("\nRows:\n\n")
	for _, r := range rep.rows {
		p("- `%s`: %s.\n", r.spec.Name, r.spec.What)
	}

	p("\n### Targets\n\n| Target | Measured | Met |\n|---|---:|---|\n")
	for _, t := range rep.targets() {
		met := "not measured"
		if t.met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*t.met]
		}
		p("| %s | %s | %s |\n", t.goal, t.figure, met)
	}

	if o.extras {
		p("\n### Login throughput\n\n")
		p("Whole logins back to back from %d concurrent clients for %s each (after 20 warm-up logins): GET /login (the app resolves the account and sends the pushed authorization request with PKCE and DPoP), "+
			"approval at the authorization server (ginoauthtest's Server.Consent, in the harness process), GET of the callback (the app exchanges the code under DPoP and starts a session). "+
			"The authorization server runs in the harness process and the app in its own, on the same %s cores, so this is the cost of both ends. "+
			"others' CPU: what other processes used meanwhile (* = measured again because it was above %.0f%%).\n\n", o.loginWorkers, fmtDur(o.loginDur), mi.Cores, 100*o.busyMax)
		p("| Store | logins/s | p50 per login | p99 per login | others' CPU |\n|---|---:|---:|---:|---:|\n")
		for _, l := range rep.logins {
			if l.err != "" {
				p("| %s | %s | | | |\n", l.store, l.err)
				continue
			}
			p("| %s | %.0f | %s | %s | %.0f%%%s |\n", l.store, float64(l.logins)/l.seconds, fmtUs(float64(l.p50.Microseconds())), fmtUs(float64(l.p99.Microseconds())), 100*l.otherCPU, strings.Repeat("*", l.retries))
		}
		p("\n### Heap per live session (memstore)\n\n")
		switch hr := rep.heap; {
		case hr == nil:
			p("Not measured (-heap-sessions 0).\n")
		case hr.err != "":
			p("Failed: %s\n", hr.err)
		default:
			delta := float64(hr.heapAfter) - float64(hr.heapBefore)
			p("%d real logins (never logged out) over %d accounts on one memstore server, live heap (runtime.MemStats.HeapAlloc after two forced GCs) before and after: "+
				"%s → %s, **%.0f bytes per live session** (%.1f heap objects per session). "+
				"This is everything the app keeps per login: the session record, the OAuth session (tokens, DPoP key) that indigoclient stores, the account index entry "+
				"(ginoauthtest's tokens are 43-character opaque strings; a real PDS's JWT access tokens are longer, so expect more per session in production). "+
				"RSS of the server process: %s → %s. The logins ran at %.0f/s.\n",
				hr.sessions, hr.accounts, fmtBytes(hr.heapBefore), fmtBytes(hr.heapAfter), delta/float64(hr.sessions),
				(float64(hr.objAfter)-float64(hr.objBefore))/float64(hr.sessions),
				fmtKB(hr.rssBefore), fmtKB(hr.rssAfter), float64(hr.sessions)/hr.seconds)
		}
		p("\n### Session check during a cleanup of expired rows\n\n")
		if len(rep.purges) == 0 {
			p("Not measured (-purge-rows 0).\n")
		} else {
			p("A ginoauth server (cache off, IdleTimeout off) on a table of its own, filled with %d expired rows (one INSERT ... SELECT inside the database; Postgres then ANALYZEd). "+
				"Baseline: %s of load without a purge (1 s warm-up). Then load while the server runs gormstore's DeleteExpired (batches of 1000), stopped when it returns. "+
				"Both loads by the Go load generator (%d connections), which records every latency and can stop when the purge ends. "+
				"others' CPU: what other processes used during each load (* = measured again, with a new fill, because it was above %.0f%%).\n\n", o.purgeRows, fmtDur(o.purgeBase), o.conns, 100*o.busyMax)
			p("| Store | fill | purge | rows deleted | req/s without | p50 without | p99 without | req/s during | p50 during | p99 during | p99 ratio | others' CPU without / during |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, pr := range rep.purges {
				if pr.err != "" && pr.during.Requests == 0 {
					p("| %s | %s | | | | | | | | | | |\n", pr.store, pr.err)
					continue
				}
				p("| %s | %.1f s | %.1f s | %d | %.0f | %s | %s | %.0f | %s | %s | %.2f× | %.0f%% / %.0f%%%s |\n", pr.store, pr.fillSeconds, pr.seconds, pr.deleted,
					pr.base.RPS, fmtUs(pr.base.P50us), fmtUs(pr.base.P99us), pr.during.RPS, fmtUs(pr.during.P50us), fmtUs(pr.during.P99us), pr.during.P99us/pr.base.P99us,
					100*pr.otherBase, 100*pr.otherDuring, strings.Repeat("*", pr.retries))
				if pr.err != "" {
					p("\n%s: %s\n", pr.store, pr.err)
				}
			}
		}
	}

	var others []float64
	for _, r := range rep.rows {
		for _, run := range r.runs {
			if run.ok() {
				others = append(others, run.otherCPU)
			}
		}
	}
	p("\n### Every round\n\nRequests/s per round, and in brackets the share of the machine's CPU that processes other than the harness, its load generator and the server used during the measured load (the machine is shared; ✗ = failed).")
	if len(others) > 0 {
		p(" Over all runs: median %.0f%%, max %.0f%%.", 100*median(others), 100*slices.Max(others))
	}
	p(" A run during which they used more than %.0f%% was measured again, at most %d more times (* per repeat; the table shows the run kept).", 100*o.busyMax, o.retries)
	p("\n\n| Row |")
	for i := range o.rounds {
		p(" %d |", i+1)
	}
	p("\n|---|%s\n", strings.Repeat("---:|", o.rounds))
	var failures []string
	for _, r := range rep.rows {
		if r.skip != "" {
			continue
		}
		p("| %s |", r.spec.Name)
		for i, run := range r.runs {
			switch {
			case run == nil:
				p(" – |")
			case run.err != "":
				p(" ✗ |")
				failures = append(failures, fmt.Sprintf("%s, round %d: %s", r.spec.Name, i+1, run.err))
			default:
				mark := ""
				if run.retries > 0 {
					mark = strings.Repeat("*", run.retries)
				}
				p(" %.0f (%.0f%%)%s |", run.res.RPS, 100*run.otherCPU, mark)
			}
		}
		p("\n")
		if r.allocErr != "" {
			failures = append(failures, fmt.Sprintf("%s, allocations: %s", r.spec.Name, r.allocErr))
		}
	}
	if len(failures) > 0 {
		p("\nFailures:\n\n")
		for _, f := range failures {
			p("- %s\n", f)
		}
	}
	for _, n := range rep.notes {
		p("\n%s\n", n)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func argString(args []string) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " *?'\"$") {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
