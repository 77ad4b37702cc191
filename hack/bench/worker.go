package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The sims can run in a child process, so that the heap the control plane spends per stream is measured without
// the simulated sidecars' own: `bench -sims-worker ADDR K TOPICS_PER_STREAM POOL` opens K streams, prints "synced"
// once every one has its world, and runs until its stdin closes.
func simsWorker(args []string) {
	if len(args) != 4 {
		log.Fatal("usage: -sims-worker ADDR K TOPICS_PER_STREAM POOL")
	}
	k, _ := strconv.Atoi(args[1])
	per, _ := strconv.Atoi(args[2])
	pool, _ := strconv.Atoi(args[3])
	sims := newSims(args[0], k, func(i int) []string {
		out := make([]string, per)
		for j := range out {
			out[j] = topicName((i*per + j) % pool)
		}
		return out
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range sims {
		go s.run(ctx)
	}
	if !waitSynced(sims, 5*time.Minute) {
		log.Fatal("streams did not sync")
	}
	fmt.Println("synced")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes our stdin
}

// serverHeapPerStream opens k streams from a child process and returns the control plane's heap growth per stream.
func serverHeapPerStream(addr string, k, per, pool int) float64 {
	before := heapNow()
	cmd := exec.Command(os.Args[0], "-sims-worker", addr, strconv.Itoa(k), strconv.Itoa(per), strconv.Itoa(pool))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "synced" {
		log.Fatalf("sims worker: %q", line)
	}
	time.Sleep(500 * time.Millisecond) // let the last ACKs land
	perStream := heapGrowth(before, heapNow()) / float64(k)
	stdin.Close()
	cmd.Wait()
	return perStream
}
