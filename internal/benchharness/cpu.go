package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The machine is shared (other people's builds and browsers may run during
// a benchmark), so every measured run also records how much CPU processes
// other than the harness's used meanwhile, and rows wait for a quiet
// machine before they start (-quiet-max, -quiet-wait).

// machineBusy returns the jiffies all CPUs spent in processes, and in total.
func machineBusy() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	var v [10]uint64
	for i := 1; i < len(f) && i <= 10; i++ {
		v[i-1], _ = strconv.ParseUint(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user. Busy is time in processes
	// (user, nice, system): interrupt time is mostly the loopback traffic
	// of the run itself and belongs to no process.
	total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
	return v[0] + v[1] + v[2], total
}

// procTicks is the CPU time of pid in clock ticks: its own, plus, with
// children, that of its children it has waited for (the finished load
// generator runs are the harness's waited children).
func procTicks(pid int, children bool) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0
	}
	n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
	t := n(11) + n(12) // utime, stime (fields 14, 15)
	if children {
		t += n(13) + n(14) // cutime, cstime
	}
	return t
}

// cpuMeter measures, over an interval, the share of the machine's CPU
// used by processes other than the harness (with its waited children) and
// the given server process.
type cpuMeter struct {
	busy0, total0 uint64
	self0, srv0   uint64
	srvPid        int
	svc0          map[int]uint64 // database processes counted as ours
}

// startCPUMeter starts measuring. With services, the CPU of the Postgres
// and Redis server processes running now counts as the run's own (a row on
// Postgres makes Postgres work); it cannot tell the harness's queries from
// anyone else's on the same servers.
func startCPUMeter(serverPid int, services bool) *cpuMeter {
	m := &cpuMeter{srvPid: serverPid, svc0: map[int]uint64{}}
	if services {
		for _, pid := range servicePids() {
			m.svc0[pid] = procTicks(pid, false)
		}
	}
	m.busy0, m.total0 = machineBusy()
	m.self0 = procTicks(os.Getpid(), true)
	if serverPid > 0 {
		m.srv0 = procTicks(serverPid, false)
	}
	return m
}

// servicePids lists the Postgres and Redis server processes.
func servicePids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(b)) {
		case "postgres", "redis-server":
			pids = append(pids, pid)
		}
	}
	return pids
}

// foreign returns the other processes' share of all CPUs since start
// (0..1), and the server's own share.
func (m *cpuMeter) foreign() (other, server, services float64) {
	busy, total := machineBusy()
	self := procTicks(os.Getpid(), true)
	var srv uint64
	if m.srvPid > 0 {
		srv = procTicks(m.srvPid, false)
	}
	dt := float64(total - m.total0)
	if dt <= 0 {
		return 0, 0, 0
	}
	var svc float64
	for pid, t0 := range m.svc0 {
		if t := procTicks(pid, false); t >= t0 {
			svc += float64(t - t0)
		}
	}
	ours := float64(self-m.self0) + float64(srv-m.srv0) + svc
	other = (float64(busy-m.busy0) - ours) / dt
	return max(0, other), float64(srv-m.srv0) / dt, svc / dt
}

// waitQuiet waits until, over one second, other processes use less than
// -quiet-max of the machine, for at most -quiet-wait. It returns the last
// share seen.
func (h *harness) waitQuiet(ctx context.Context, what string) float64 {
	if h.o.quietWait <= 0 {
		return 0
	}
	deadline := time.Now().Add(h.o.quietWait)
	logged := false
	for {
		m := startCPUMeter(0, false)
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(time.Second):
		}
		other, _, _ := m.foreign()
		if other <= h.o.quietMax {
			if logged {
				log.Printf("  quiet again (%.0f%% of %d CPUs used by other processes)", 100*other, runtime.NumCPU())
			}
			return other
		}
		if time.Now().After(deadline) {
			log.Printf("  still busy after %s (%.0f%% by other processes): measuring %s anyway", h.o.quietWait, 100*other, what)
			return other
		}
		if !logged {
			log.Printf("  other processes use %.0f%% of the machine: waiting up to %s before %s", 100*other, h.o.quietWait, what)
			logged = true
		}
	}
}
