// Command soak runs rocketpilot's control plane under churn for a bounded time (test/soak) and prints what it
// found as markdown: heap and goroutine samples, the churn, the checks and the verdict. It exits 1 when routes were
// lost or memory grew, 2 when the stack could not start.
//
//	go run ./hack/soak                      # ten minutes (make soak)
//	go run ./hack/soak -duration 1m -sample-every 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rocketpilot/rocketpilot/test/soak"
)

func main() {
	var cfg soak.Config
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long the churn runs")
	flag.IntVar(&cfg.Topics, "topics", 3000, "the pool of topic names; about 80% exist at any time")
	flag.IntVar(&cfg.Sidecars, "sidecars", 24, "simulated sidecars, a third each: Go sidecar clients, raw delta and raw state-of-the-world ADS streams")
	flag.Float64Var(&cfg.ChurnRate, "churn-rate", 20, "churn events per second")
	flag.DurationVar(&cfg.SampleEvery, "sample-every", 30*time.Second, "interval between heap and goroutine samples")
	quiet := flag.Bool("quiet", false, "no progress lines on stderr")
	flag.Parse()
	logger := log.New(os.Stderr, "", log.LstdFlags)
	if !*quiet {
		cfg.Logf = logger.Printf
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		logger.Print(err)
		os.Exit(2)
	}
	fmt.Print(rep.Markdown())
	if !rep.Pass {
		os.Exit(1)
	}
}
