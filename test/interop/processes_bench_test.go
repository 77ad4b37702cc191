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
// and with an open-loop load generator (loadGen) whose own cost and burstiness do not hide the path's.
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

	genDirect, genSidecar := newLoadGen(b, nameServer, goTopic), newLoadGen(b, sidecar, goTopic)
	genDirect.run(b, 2000, 0, 64) // warm
	genSidecar.run(b, 2000, 0, 64)
	const probe = 20000
	genRate := float64(probe) / genDirect.run(b, probe, 0, 64).Seconds()
	paths := []struct {
		name string
		gen  *loadGen
	}{{"direct", genDirect}, {"sidecar", genSidecar}}
	for _, path := range paths {
		b.Run("loadgen/saturation/"+path.name, func(b *testing.B) {
			if path.gen == genSidecar {
				profileDuring(b, sidecarAdmin, 5)
			}
			self0, demo0, sidecar0 := cpuTime(b, os.Getpid()), cpuTime(b, demoPid), cpuTime(b, sidecarPid)
			calls0 := systemCalls(b, sidecarPid)
			reportRate(b, b.N, path.gen.run(b, b.N, 0, 64))
			reportLatency(b, path.gen.lat)
			perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			b.ReportMetric(perMsg(cpuTime(b, os.Getpid())-self0), "loadgen-cpu-µs/msg")
			b.ReportMetric(perMsg(cpuTime(b, demoPid)-demo0), "brokers-cpu-µs/msg")
			b.ReportMetric(perMsg(cpuTime(b, sidecarPid)-sidecar0), "sidecar-cpu-µs/msg")
			if path.gen == genSidecar {
				calls := systemCalls(b, sidecarPid)
				b.ReportMetric(float64(calls[0]-calls0[0])/float64(b.N), "sidecar-reads/msg")
				b.ReportMetric(float64(calls[1]-calls0[1])/float64(b.N), "sidecar-writes/msg")
			}
		})
	}
	for _, path := range paths {
		b.Run("loadgen/halfrate/"+path.name, func(b *testing.B) {
			reportRate(b, b.N, path.gen.run(b, b.N, time.Duration(float64(time.Second)/(genRate/2)), 0))
			reportLatency(b, path.gen.lat)
		})
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
