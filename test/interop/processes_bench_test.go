package interop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkProcesses runs the produce benchmarks and the latency at half rate with every party in a process of
// its own, as they are deployed: `rocketpilot serve --demo` (the embedded NameServer, the simulated brokers and the
// control plane), `rocketpilot sidecar` following it, and the client in the benchmark's process, sending straight
// to the brokers ("direct") or with the sidecar as its only NameServer address. In one process
// (BenchmarkGoClientProduce) the sidecar's garbage is collected by stopping the client and the brokers too, and
// the client's by stopping the sidecar; here each has its own heap.
//
// Two layouts of the 2 cores: "shared", every process on both, so that the sidecar's every cycle is taken from the
// brokers' too; and "pinned", as a sidecar is deployed: the application and its sidecar on one core, the brokers
// (another machine, in production) on the other. The latency at half rate is measured twice: with the Go client,
// and with an open-loop load generator (loadGen) whose own cost and burstiness do not hide the path's. The
// generator's figures (saturation and half rate) interleave the two paths in rounds, and report both, the
// sidecar's share of the direct rate and its added p99 (issue 18's goals: at least 80 %, at most 1 ms).
func BenchmarkProcesses(b *testing.B) {
	bin := rocketpilotBinary(b)
	b.Run("shared", func(b *testing.B) { benchProcesses(b, bin, false) })
	b.Run("pinned", func(b *testing.B) { benchProcesses(b, bin, true) })
}

func benchProcesses(b *testing.B, bin string, pinned bool) {
	appCPU, brokerCPU := -1, -1
	if pinned {
		appCPU, brokerCPU = 0, 1
		pinProcess(b, appCPU)
	}
	nameServer, xdsAddr, demoPid := startDemoProcess(b, bin, brokerCPU)
	sidecar, sidecarAdmin, sidecarPid := startSidecarProcess(b, bin, xdsAddr, appCPU)
	b.Run("direct", func(b *testing.B) { benchProduce(b, nameServer) })
	b.Run("sidecar", func(b *testing.B) { benchProduce(b, sidecar) })
	rate := saturationRate(b, nameServer) / 2
	b.Run("halfrate/direct", func(b *testing.B) { benchAtRate(b, nameServer, rate) })
	b.Run("halfrate/sidecar", func(b *testing.B) { benchAtRate(b, sidecar, rate) })

	gens := [2]*loadGen{newLoadGen(b, nameServer, goTopic), newLoadGen(b, sidecar, goTopic)}
	for _, g := range gens {
		g.run(b, 2000, 0, 64) // warm
	}
	const probe = 20000
	genRate := float64(probe) / gens[0].run(b, probe, 0, 64).Seconds()
	procs := processes{"loadgen": os.Getpid(), "brokers": demoPid, "sidecar": sidecarPid}
	b.Run("loadgen/saturation", func(b *testing.B) {
		profileDuring(b, sidecarAdmin, 5)
		interleave(b, gens, b.N, 0, 64, procs).report(b, true)
	})
	b.Run("loadgen/halfrate", func(b *testing.B) {
		interleave(b, gens, b.N, time.Duration(float64(time.Second)/(genRate/2)), 0, procs).report(b, false)
	})
}

// processes are the benchmark's parties by name: their process ids.
type processes map[string]int

// pathRuns are what interleave measured of the direct path ([0]) and the sidecar's ([1]).
type pathRuns [2]pathRun

// pathRun is what interleave measured of one path over its rounds.
type pathRun struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration
	cpu     map[string]time.Duration // by party
	calls   [2]int64                 // the sidecar's read and write system calls
}

// interleavedRounds is how many rounds interleave splits a comparison into.
const interleavedRounds = 10

// interleave runs n sends on each path (gens[0] direct, gens[1] through the sidecar) in rounds that alternate
// between the paths (ABBA: each goes first in every other round), so that both see the same machine: on a shared
// virtual machine, what else runs changes the direct path's own p99 by milliseconds from one second to the next,
// and figures measured one path after the other compare two moments rather than two paths.
func interleave(b *testing.B, gens [2]*loadGen, n int, interval time.Duration, inFlight int, procs processes) pathRuns {
	var runs pathRuns
	for i := range runs {
		runs[i].cpu = map[string]time.Duration{}
	}
	per := max(n/interleavedRounds, 1)
	for round := 0; round*per < n; round++ {
		count := min(per, n-round*per)
		order := [2]int{0, 1}
		if round%2 == 1 {
			order = [2]int{1, 0}
		}
		for _, path := range order {
			r := &runs[path]
			cpu0 := map[string]time.Duration{}
			for name, pid := range procs {
				cpu0[name] = cpuTime(b, pid)
			}
			calls0 := systemCalls(b, procs["sidecar"])
			r.elapsed += gens[path].run(b, count, interval, inFlight)
			for name, pid := range procs {
				r.cpu[name] += cpuTime(b, pid) - cpu0[name]
			}
			calls := systemCalls(b, procs["sidecar"])
			r.calls[0] += calls[0] - calls0[0]
			r.calls[1] += calls[1] - calls0[1]
			r.lat = append(r.lat, gens[path].lat...)
			r.n += count
		}
	}
	return runs
}

// report reports both paths' rates and latencies, the sidecar's share of the direct rate and its added p99, and,
// with cpu, each party's CPU per message on each path and the sidecar's system calls per message.
func (runs pathRuns) report(b *testing.B, cpu bool) {
	names := [2]string{"direct", "sidecar"}
	var rate, p99 [2]float64
	for i, r := range runs {
		rate[i] = float64(r.n) / r.elapsed.Seconds()
		slices.Sort(r.lat)
		p99[i] = float64(r.lat[len(r.lat)*99/100].Microseconds())
		b.ReportMetric(rate[i], names[i]+"-msgs/s")
		b.ReportMetric(float64(r.lat[len(r.lat)/2].Microseconds()), names[i]+"-p50-µs")
		b.ReportMetric(p99[i], names[i]+"-p99-µs")
		if !cpu {
			continue
		}
		for name, d := range r.cpu {
			if i == 0 && name == "sidecar" {
				continue
			}
			b.ReportMetric(float64(d.Microseconds())/float64(r.n), names[i]+"-"+name+"-cpu-µs/msg")
		}
	}
	b.ReportMetric(100*rate[1]/rate[0], "sidecar/direct-%")
	b.ReportMetric(p99[1]-p99[0], "added-p99-µs")
	if cpu {
		b.ReportMetric(float64(runs[1].calls[0])/float64(runs[1].n), "sidecar-reads/msg")
		b.ReportMetric(float64(runs[1].calls[1])/float64(runs[1].n), "sidecar-writes/msg")
	}
}

// pinProcess runs every thread of the benchmark's process on one CPU, and its goroutines on one P, until the
// benchmark ends.
func pinProcess(t testing.TB, cpu int) {
	t.Helper()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 {
		t.Skip("the pinned layout needs 2 CPUs")
	}
	var one unix.CPUSet
	one.Set(cpu)
	procs := runtime.GOMAXPROCS(1)
	setThreads(t, &one)
	t.Cleanup(func() {
		setThreads(t, &all)
		runtime.GOMAXPROCS(procs)
	})
}

// setThreads sets the CPU affinity of every thread of the process (a thread made later inherits its maker's).
func setThreads(t testing.TB, set *unix.CPUSet) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			t.Fatal(err)
		}
	}
}

var rocketpilotBuild = goBuild{pkg: "github.com/rocketpilot/rocketpilot/cmd/rocketpilot", name: "rocketpilot"}

// rocketpilotBinary builds the rocketpilot command.
func rocketpilotBinary(t testing.TB) string { return rocketpilotBuild.binary(t) }

// freeAddrs returns n loopback addresses nothing listens on (now).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		defer l.Close()
	}
	return addrs
}

// startProcess runs bin with args until the test ends, on CPU cpu only unless it is negative, and waits until
// admin's /readyz answers 200; it returns the process id.
func startProcess(t testing.TB, what string, cpu int, bin, admin string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if extra := os.Getenv(envVarOf(what)); extra != "" {
		cmd.Env = append(os.Environ(), strings.Fields(extra)...)
	}
	if err := startOn(cmd, cpu); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ready := func() bool {
		select {
		case err := <-exited:
			exited <- err
			return false
		default:
		}
		res, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	if !waitFor(30*time.Second, ready) {
		t.Fatalf("%s never became ready", what)
	}
	return cmd.Process.Pid
}

// envVarOf names the variable whose words (NAME=VALUE) are added to a process's environment, for trying a setting
// (GOGC=off, GODEBUG=...) on one party: BENCH_SIDECAR_ENV for "rocketpilot sidecar", BENCH_SERVE_ENV for
// "rocketpilot serve --demo".
func envVarOf(what string) string {
	return "BENCH_" + strings.ToUpper(strings.Fields(what)[1]) + "_ENV"
}

// startOn starts cmd on CPU cpu only (any when negative): from a thread of its own set to that CPU, whose
// affinity the child inherits, and whose Go runtime then sizes itself to one CPU.
func startOn(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, its affinity changed, ends with the goroutine
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			done <- err
			return
		}
		done <- cmd.Start()
	}()
	return <-done
}

// cpuTime is the CPU time (user and system) process pid has used, from /proc, in clock ticks of 10 ms.
func cpuTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name (which is in parentheses and may hold spaces): utime is the 12th, stime
	// the 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// systemCalls is how many read and write system calls process pid has made, from /proc (syscr and syscw).
func systemCalls(t testing.TB, pid int) [2]int64 {
	t.Helper()
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	var calls [2]int64
	for _, line := range strings.Split(string(io), "\n") {
		name, value, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(value, 10, 64)
		switch name {
		case "syscr":
			calls[0] = n
		case "syscw":
			calls[1] = n
		}
	}
	return calls
}

// startDemoProcess runs `rocketpilot serve --demo`; it returns the embedded NameServer's and the xDS address.
func startDemoProcess(t testing.TB, bin string, cpu int) (nameServer, xdsAddr string, pid int) {
	a := freeAddrs(t, 3)
	nameServer, xdsAddr = a[0], a[1]
	pid = startProcess(t, "rocketpilot serve --demo", cpu, bin, a[2], "serve", "--demo", "--log-level", "warn", "--demo-queue-capacity", "2000",
		"--demo-namesrv-address", nameServer, "--xds-address", xdsAddr, "--admin-address", a[2])
	return nameServer, xdsAddr, pid
}

// startSidecarProcess runs `rocketpilot sidecar` following xdsAddr; it returns its NameServer address.
func startSidecarProcess(t testing.TB, bin, xdsAddr string, cpu int) (nameServer, admin string, pid int) {
	a := freeAddrs(t, 2)
	pid = startProcess(t, "rocketpilot sidecar", cpu, bin, a[1], "sidecar", "--log-level", "warn", "--pprof",
		"--xds-server", xdsAddr, "--listen", a[0], "--admin-address", a[1], "--node-id", uniqueName("bench-sidecar"))
	return a[0], a[1], pid
}

// profileDuring writes a CPU profile and an allocation profile of the process serving pprof at admin, over the
// next seconds, to the files BENCH_SIDECAR_CPUPROFILE and BENCH_SIDECAR_ALLOCPROFILE name, if they are set: for
// looking into a benchmark, not part of its figures.
func profileDuring(t testing.TB, admin string, seconds int) {
	fetchProfile(t, admin, "profile", seconds, os.Getenv("BENCH_SIDECAR_CPUPROFILE"))
	fetchProfile(t, admin, "allocs", seconds, os.Getenv("BENCH_SIDECAR_ALLOCPROFILE"))
}

// fetchProfile writes the profile of the given kind over the next seconds to path, if path is set.
func fetchProfile(t testing.TB, admin, kind string, seconds int, path string) {
	if path == "" {
		return
	}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		res, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", admin, kind, seconds))
		if err != nil {
			t.Error(err)
			return
		}
		defer res.Body.Close()
		out, err := os.Create(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, res.Body)
	}()
}
