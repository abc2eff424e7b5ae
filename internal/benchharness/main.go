// Command benchharness measures the session check that every authenticated
// request pays with ginoauth (ginoauth.Middleware: open the sealed session
// cookie, one storage read of the session record) against anchors: bare
// Gin, gin-contrib/sessions' cookie store (alone and with a GORM
// primary-key read on SQLite and Postgres), and the stack of the Deno
// library @tijs/hono-oauth-sessions (Hono + iron-session on Node 22).
//
// Every row is a server process of its own on loopback, started for its
// turn and stopped after it, loaded by wrk (or, without wrk, by this
// program's own load generator, also a separate process) with 32
// connections. Rounds alternate: each round runs every row once (in reverse
// order every other round), and a row's figure is the median over rounds of
// its requests/s divided by bare Gin's in the same round, since the load
// generator shares the machine's cores with the server. Allocations per
// request are measured in the server process with testing.AllocsPerRun on
// the same handler served with httptest. Then: login throughput, heap per
// live session in memstore, and the session check's p99 while gormstore's
// DeleteExpired purges 1,000,000 expired rows (SQLite and Postgres).
//
//	go run ./internal/benchharness                 # everything (about 20 minutes on a quiet machine)
//	go run ./internal/benchharness -quick          # 3 rounds of 2 s, short extras, no 1M purge (about 5 minutes)
//	go run ./internal/benchharness -rows 'ginoauth/memstore*' -rounds 3 -duration 3s -extras=false
//	go run ./internal/benchharness -list           # the rows
//
// Postgres: GINOAUTH_TEST_POSTGRES_DSN (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable); Redis:
// GINOAUTH_TEST_REDIS_ADDR (default 127.0.0.1:6379). Rows whose service is
// unreachable are skipped and say so. The harness's tables (bh_<run>_*) and
// Redis keys (bh_<run>:*) are removed at the end. The Node anchor is
// installed by deno-anchor/install.sh into
// ${GINOAUTH_BENCH_CACHE:-~/.cache/ginoauth-benchharness}, outside the
// repository.
//
// The machine is usually shared with other work, so the harness waits for
// a quiet machine before each row, records how much CPU other processes
// used during every measured run, and measures a run again when they used
// much (-quiet-max, -quiet-wait, -busy-max, -retries).
//
// The report (Markdown) goes to stdout and, with -out, to a file; progress
// goes to stderr. BENCHMARKS.md at the repository root holds a full run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			serveMain(os.Args[2:])
			return
		case "loadgen":
			loadgenMain(os.Args[2:])
			return
		}
	}
	os.Exit(harnessMain())
}

// options are the harness's flags.
type options struct {
	rounds       int
	duration     time.Duration
	warmup       time.Duration
	conns        int
	threads      int
	rows         string
	loadgen      string
	allocRuns    int
	extras       bool
	loginDur     time.Duration
	loginWorkers int
	heapSessions int
	accounts     int
	purgeRows    int
	purgeBase    time.Duration
	pgDSN        string
	redisAddr    string
	nodeAnchor   string
	out          string
	quick        bool
	quietMax     float64
	quietWait    time.Duration
	busyMax      float64
	retries      int
}

func harnessMain() int {
	var o options
	flag.IntVar(&o.rounds, "rounds", 6, "alternating rounds (at least 3)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured load per row per round (wrk: whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measurement (wrk: whole seconds)")
	flag.IntVar(&o.conns, "conns", 32, "connections of the load generator")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.StringVar(&o.rows, "rows", "default", `rows: "default", "all", or comma-separated names and patterns such as 'ginoauth/*' (bare-gin is always in)`)
	flag.StringVar(&o.loadgen, "loadgen", "auto", "load generator: auto (wrk if installed), wrk or go")
	flag.IntVar(&o.allocRuns, "alloc-runs", 2000, "runs of testing.AllocsPerRun per row")
	flag.BoolVar(&o.extras, "extras", true, "measure login throughput, heap per session and the purge")
	flag.DurationVar(&o.loginDur, "login-duration", 5*time.Second, "login throughput: length of each run")
	flag.IntVar(&o.loginWorkers, "login-workers", 8, "login throughput: concurrent logins")
	flag.IntVar(&o.heapSessions, "heap-sessions", 100_000, "live sessions created in memstore for heap per session (0: skip)")
	flag.IntVar(&o.accounts, "accounts", 1000, "accounts the sessions of the heap measurement are spread over")
	flag.IntVar(&o.purgeRows, "purge-rows", 1_000_000, "expired rows purged under load on SQLite and Postgres (0: skip)")
	flag.DurationVar(&o.purgeBase, "purge-baseline", 10*time.Second, "load without purge, for the purge's comparison")
	flag.StringVar(&o.pgDSN, "pg-dsn", envOr("GINOAUTH_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "Postgres DSN")
	flag.StringVar(&o.redisAddr, "redis-addr", envOr("GINOAUTH_TEST_REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.StringVar(&o.nodeAnchor, "node-anchor", "", "directory of deno-anchor/install.sh (default: found from the working directory)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.Float64Var(&o.quietMax, "quiet-max", 0.10, "before each row, wait until other processes use at most this share of the machine's CPU")
	flag.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "longest wait for a quiet machine before each row (0: do not wait)")
	flag.Float64Var(&o.busyMax, "busy-max", 0.15, "a run during which other processes used more than this share of the CPU is measured again")
	flag.IntVar(&o.retries, "retries", 2, "how many times a row's run is measured again when other processes were busy")
	flag.BoolVar(&o.quick, "quick", false, "a quick run: 3 rounds of 2 s, 1 s warm-up, 2 s logins, 10k sessions, no 1M purge")
	list := flag.Bool("list", false, "list the rows and exit")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("benchharness: ")

	if *list {
		for _, r := range allRows() {
			def := " "
			if r.Default {
				def = "*"
			}
			fmt.Printf("%s %-34s %s\n", def, r.Name, r.What)
		}
		fmt.Println("(* = in the default selection)")
		return 0
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		apply := func(name string, f func()) {
			if !set[name] {
				f()
			}
		}
		apply("rounds", func() { o.rounds = 3 })
		apply("duration", func() { o.duration = 2 * time.Second })
		apply("warmup", func() { o.warmup = time.Second })
		apply("login-duration", func() { o.loginDur = 2 * time.Second })
		apply("heap-sessions", func() { o.heapSessions = 10_000 })
		apply("purge-rows", func() { o.purgeRows = 0 })
		apply("alloc-runs", func() { o.allocRuns = 500 })
		apply("quiet-wait", func() { o.quietWait = 10 * time.Second })
		apply("retries", func() { o.retries = 0 })
	}
	if o.rounds < 3 {
		log.Print("-rounds must be at least 3")
		return 2
	}
	rows, err := selectRows(o.rows)
	if err != nil {
		log.Print(err)
		return 2
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	h, err := newHarness(ctx, o)
	if err != nil {
		log.Print(err)
		return 1
	}
	defer h.cleanup()

	rep := h.run(ctx, rows)
	if ctx.Err() != nil {
		log.Print("interrupted")
		return 1
	}
	text := rep.markdown()
	var w io.Writer = os.Stdout
	_, _ = io.WriteString(w, text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o600); err != nil {
			log.Print(err)
			return 1
		}
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
