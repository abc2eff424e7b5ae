package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// loadResult is one load run, from wrk or the Go load generator.
type loadResult struct {
	Tool     string  `json:"tool"`
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	MaxUs    float64 `json:"max_us"`
	Errors   int64   `json:"errors"` // connect, read, write errors and timeouts
	Non2xx   int64   `json:"non2xx"`
}

func (r loadResult) problem() string {
	switch {
	case r.Requests == 0:
		return "no request completed"
	case r.Errors > 0 || r.Non2xx > 0:
		return fmt.Sprintf("%d socket errors/timeouts and %d non-2xx answers of %d requests", r.Errors, r.Non2xx, r.Requests)
	}
	return ""
}

// loadSpec says what to load.
type loadSpec struct {
	url     string
	header  string // the credential, a header line "Name: value"; "" for none
	conns   int
	threads int // wrk threads
	d       time.Duration
}

// loadTool runs the load generator in a process of its own.
type loadTool interface {
	name() string
	run(ctx context.Context, s loadSpec) (loadResult, error)
}

// wrkTool runs wrk with a Lua script that reports what the harness needs
// as one line of JSON.
type wrkTool struct {
	bin, script string
}

const wrkScript = `-- written by internal/benchharness
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

func newWrk(dir string) (*wrkTool, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "report.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return nil, err
	}
	return &wrkTool{bin: bin, script: script}, nil
}

func (w *wrkTool) name() string { return "wrk" }

// wrkSeconds is d as wrk takes it: whole seconds, at least one.
func wrkSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

func (w *wrkTool) run(ctx context.Context, s loadSpec) (loadResult, error) {
	args := []string{"-t", strconv.Itoa(s.threads), "-c", strconv.Itoa(s.conns),
		"-d", strconv.Itoa(wrkSeconds(s.d)) + "s", "--timeout", "5s", "-s", w.script}
	if s.header != "" {
		args = append(args, "-H", s.header)
	}
	args = append(args, s.url)
	out, err := exec.CommandContext(ctx, w.bin, args...).CombinedOutput() //nolint:gosec // wrk from PATH, with the harness's arguments
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		js, ok := strings.CutPrefix(line, "BENCHJSON ")
		if !ok {
			continue
		}
		var v map[string]int64
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return loadResult{}, fmt.Errorf("wrk report %q: %v", js, err)
		}
		secs := float64(v["duration_us"]) / 1e6
		if secs <= 0 {
			return loadResult{}, fmt.Errorf("wrk report %q: no duration", js)
		}
		return loadResult{Tool: "wrk", Requests: v["requests"], Seconds: secs, RPS: float64(v["requests"]) / secs,
			P50us: float64(v["p50_us"]), P99us: float64(v["p99_us"]), MaxUs: float64(v["max_us"]),
			Errors: v["connect"] + v["read"] + v["write"] + v["timeout"], Non2xx: v["status"]}, nil
	}
	return loadResult{}, fmt.Errorf("wrk printed no report: %s", out)
}

// goTool runs this program's own load generator (the loadgen subcommand)
// as a subprocess.
type goTool struct{ self string }

func (g *goTool) name() string { return "go-loadgen" }

func (g *goTool) run(ctx context.Context, s loadSpec) (loadResult, error) {
	h, err := g.start(ctx, s, 0)
	if err != nil {
		return loadResult{}, err
	}
	return h.wait()
}

// goLoad is a running Go load generator.
type goLoad struct {
	cmd  *exec.Cmd
	out  *strings.Builder
	errb *strings.Builder
	done chan error
}

// start launches the Go load generator; with s.d == 0 it runs until stop.
func (g *goTool) start(ctx context.Context, s loadSpec, warmup time.Duration) (*goLoad, error) {
	args := []string{"loadgen", "-url", s.url, "-c", strconv.Itoa(s.conns), "-d", s.d.String(), "-warmup", warmup.String()}
	if s.header != "" {
		args = append(args, "-header", s.header)
	}
	cmd := exec.CommandContext(ctx, g.self, args...) //nolint:gosec // this program's own loadgen subcommand
	h := &goLoad{cmd: cmd, out: &strings.Builder{}, errb: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = h.out, h.errb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { h.done <- cmd.Wait() }()
	return h, nil
}

// stop asks the load generator to finish now and report.
func (h *goLoad) stop() { _ = h.cmd.Process.Signal(syscall.SIGTERM) }

func (h *goLoad) wait() (loadResult, error) {
	if err := <-h.done; err != nil {
		return loadResult{}, fmt.Errorf("go load generator: %v: %s", err, h.errb.String())
	}
	for _, line := range strings.Split(h.out.String(), "\n") {
		if js, ok := strings.CutPrefix(line, "LOADGEN "); ok {
			var r loadResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return loadResult{}, err
			}
			return r, nil
		}
	}
	return loadResult{}, fmt.Errorf("go load generator printed no report: %s %s", h.out.String(), h.errb.String())
}

// loadgenMain is the Go load generator: -c connections (one goroutine and
// one keep-alive connection each) sending GET url back to back, for -d
// (or, with -d 0, until SIGTERM), after -warmup whose requests are not
// counted. It records every latency and prints "LOADGEN <json>".
func loadgenMain(args []string) {
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	target := fs.String("url", "", "URL to GET")
	conns := fs.Int("c", 32, "connections")
	d := fs.Duration("d", 5*time.Second, "duration after warm-up (0: until SIGTERM)")
	warmup := fs.Duration("warmup", 0, "warm-up, not counted")
	header := fs.String("header", "", `the credential, a header line "Name: value"`)
	_ = fs.Parse(args)
	log.SetFlags(0)
	log.SetPrefix("benchharness loadgen: ")

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	start := time.Now()
	warmEnd := start.Add(*warmup)
	if *d > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, warmEnd.Add(*d))
		defer c2()
	}
	type worker struct {
		lat           []time.Duration
		errors, non2x int64
	}
	workers := make([]worker, *conns)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
			if err != nil {
				log.Fatal(err)
			}
			if name, value, ok := strings.Cut(*header, ":"); ok {
				req.Header.Set(name, strings.TrimSpace(value))
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				t1 := time.Now()
				if ctx.Err() != nil {
					return // cut off by the end of the run: not counted
				}
				if t0.Before(warmEnd) {
					continue
				}
				switch {
				case err != nil:
					w.errors++
				case resp.StatusCode < 200 || resp.StatusCode > 399:
					w.non2x++
				}
				w.lat = append(w.lat, t1.Sub(t0))
			}
		}(&workers[i])
	}
	wg.Wait()
	end := time.Now()
	var all []time.Duration
	var res loadResult
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errors
		res.Non2xx += w.non2x
	}
	slices.Sort(all)
	res.Tool = "go-loadgen"
	res.Requests = int64(len(all))
	res.Seconds = end.Sub(warmEnd).Seconds()
	if end.Before(warmEnd) {
		res.Seconds = 0
	}
	if res.Seconds > 0 {
		res.RPS = float64(res.Requests) / res.Seconds
	}
	if len(all) > 0 {
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		pct := func(p float64) float64 { return us(all[min(len(all)-1, int(p/100*float64(len(all))))]) }
		res.P50us, res.P99us, res.MaxUs = pct(50), pct(99), us(all[len(all)-1])
	}
	b, _ := json.Marshal(res)
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "LOADGEN %s\n", b)
	_ = w.Flush()
}
