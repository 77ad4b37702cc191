package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The sims can run in a child process, so that the heap and CPU the control plane spends per stream are measured
// without the simulated sidecars' own: `bench -sims-worker ADDR K TOPICS_PER_STREAM POOL [HOT]` opens K streams,
// prints "synced" once every one has its world, and runs until its stdin closes.
//
// With HOT, every stream subscribes to HOT's route and TOPICS_PER_STREAM-1 topics of the pool besides, and after
// "synced" the worker reports each new version of HOT's route that has reached every stream (the fan-out
// scenario): "change C UNIXNANO WIRE BYTES RECONNECTS" once every stream has received the C-th version after
// "synced", UNIXNANO being the wall clock when the last of them received it (each ACKs at once), WIRE and BYTES
// what its streams have received in all so far, on the wire and as protobuf, RECONNECTS how many streams were
// opened again.
func simsWorker(args []string) {
	if len(args) != 4 && len(args) != 5 {
		log.Fatal("usage: -sims-worker ADDR K TOPICS_PER_STREAM POOL [HOT]")
	}
	k, _ := strconv.Atoi(args[1])
	per, _ := strconv.Atoi(args[2])
	pool, _ := strconv.Atoi(args[3])
	topicsOf := func(i int) []string {
		out := make([]string, per)
		for j := range out {
			out[j] = topicName((i*per + j) % pool)
		}
		return out
	}
	var hot string
	if len(args) == 5 {
		hot = args[4]
		topicsOf = func(i int) []string { // HOT, then topics of the pool but topic 0 (which HOT may be)
			out := []string{hot}
			for j := range per - 1 {
				out = append(out, topicName(1+(i*(per-1)+j)%(pool-1)))
			}
			return out
		}
	}
	sims := newSims(args[0], k, topicsOf)
	var hotTracker *versionTracker
	if hot != "" {
		hotTracker = trackVersions(sims, hot)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range sims {
		go s.run(ctx)
	}
	if !waitSynced(sims, 5*time.Minute) {
		log.Fatal("streams did not sync")
	}
	if hotTracker != nil {
		hotTracker.arm()
	}
	fmt.Println("synced")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes our stdin
}

// versionTracker follows one topic's route on every sim, the way churn follows changed topics (the sims' onRoute
// hook, called when a route arrives, before the sim ACKs it), and prints a line when a new version has reached
// every sim.
type versionTracker struct {
	sims []*sim

	mu      sync.Mutex
	armed   bool
	last    []string      // per sim: the version of the route it holds
	seen    []int         // per sim: new versions received since arm
	reached map[int]int   // C → sims that have received their C-th new version
	latest  map[int]int64 // C → when the last of them did (Unix ns)
	done    chan int      // a C that every sim has
}

func trackVersions(sims []*sim, topic string) *versionTracker {
	t := &versionTracker{sims: sims, last: make([]string, len(sims)), seen: make([]int, len(sims)),
		reached: map[int]int{}, latest: map[int]int64{}, done: make(chan int, 1024)}
	for i, s := range sims {
		s.mu.Lock()
		s.onRoute = func(name, version string) {
			if name == topic {
				t.received(i, version)
			}
		}
		s.mu.Unlock()
	}
	go t.report()
	return t
}

// arm starts counting: the versions the sims hold now are the ones the changes are counted from.
func (t *versionTracker) arm() {
	t.mu.Lock()
	t.armed = true
	t.mu.Unlock()
}

func (t *versionTracker) received(i int, version string) {
	now := time.Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if version == t.last[i] { // the same route again (a reconnect)
		return
	}
	t.last[i] = version
	if !t.armed {
		return
	}
	t.seen[i]++
	c := t.seen[i]
	t.reached[c]++
	t.latest[c] = max(t.latest[c], now)
	if t.reached[c] == len(t.sims) {
		t.done <- c
	}
}

func (t *versionTracker) report() {
	for c := range t.done {
		t.mu.Lock()
		at := t.latest[c]
		delete(t.reached, c)
		delete(t.latest, c)
		t.mu.Unlock()
		var wire, bytes int64
		reconnects := 0
		for _, s := range t.sims {
			wire += s.wire.Load()
			bytes += s.bytes.Load()
			s.mu.Lock()
			reconnects += s.streams - 1
			s.mu.Unlock()
		}
		fmt.Printf("change %d %d %d %d %d\n", c, at, wire, bytes, reconnects)
	}
}

// simsProcess is a -sims-worker child process whose streams have all synced.
type simsProcess struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *bufio.Reader
	reports chan fanoutReport // the fan-out's reports, once waitChange has started reading them
}

// startSimsProcess runs `bench -sims-worker args...` and returns once it has printed "synced".
func startSimsProcess(args ...string) *simsProcess {
	cmd := exec.Command(os.Args[0], append([]string{"-sims-worker"}, args...)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, _ := out.ReadString('\n')
	if strings.TrimSpace(line) != "synced" {
		log.Fatalf("sims worker: %q", line)
	}
	return &simsProcess{cmd: cmd, stdin: stdin, out: out}
}

// stop ends the child process (it exits when its stdin closes) and waits for it.
func (p *simsProcess) stop() {
	p.stdin.Close()
	p.cmd.Wait()
}

// serverHeapPerStream opens k streams from a child process and returns the control plane's heap growth per stream.
func serverHeapPerStream(addr string, k, per, pool int) float64 {
	before := heapNow()
	p := startSimsProcess(addr, strconv.Itoa(k), strconv.Itoa(per), strconv.Itoa(pool))
	time.Sleep(500 * time.Millisecond) // let the last ACKs land
	perStream := heapGrowth(before, heapNow()) / float64(k)
	writeHeapProfile(fmt.Sprintf("heap-%d-streams.pprof", k)) // where the heap per stream goes
	p.stop()
	return perStream
}
