// Command orderlyconsumer runs one rocketmq-client-go push consumer, orderly unless -orderly=false, and prints, on stdout, one JSON line per
// message it receives, in the order the client hands them over:
//
//	{"id": <keys>, "tag": ..., "queue": "<broker>/<queue id>", "offset": ..., "body": <base64>, "reconsume": ..., "at": <unix ns>}
//
// then {"closed": true} once stdin ends (the caller's signal to stop) and the consumer has shut down.
//
// The interop tests run it as a child process built without the race detector: the client's orderly consumer reads
// its process queue's tree map without the lock its puller writes it under (consumer/process_queue.go,
// takeMessages calls msgCache.Empty unlocked), a data race of the library's own that would fail any -race test
// that hosts it. The brokers it consumes from stay in the race-checked test process.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

type delivery struct {
	ID        string `json:"id"`
	Tag       string `json:"tag"`
	Queue     string `json:"queue"`
	Offset    int64  `json:"offset"`
	Body      []byte `json:"body"`
	Reconsume int32  `json:"reconsume"`
	At        int64  `json:"at"` // when it was handed over, in Unix nanoseconds: deliveries of several processes merge by it
}

func main() {
	nameServer := flag.String("namesrv", "", "the NameServer, host:port")
	group := flag.String("group", "", "the consumer group")
	topic := flag.String("topic", "", "the topic")
	tag := flag.String("tag", "*", "the tag expression")
	orderly := flag.Bool("orderly", true, "consume orderly (false: concurrently)")
	delay := flag.Duration("delay", 0, "how long consuming each message takes")
	instance := flag.String("instance", "", "the client's instance name (the group's name when empty): what makes its client id")
	flag.Parse()
	if *nameServer == "" || *group == "" || *topic == "" {
		flag.Usage()
		os.Exit(2)
	}
	rlog.SetLogLevel("error")
	if *instance == "" {
		*instance = *group
	}
	if err := run(*nameServer, *group, *topic, *tag, *instance, *orderly, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "orderlyconsumer:", err)
		os.Exit(1)
	}
}

func run(nameServer, group, topic, tag, instance string, orderly bool, delay time.Duration) error {
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	c, err := consumer.NewPushConsumer(
		consumer.WithNameServer([]string{nameServer}),
		consumer.WithGroupName(group),
		consumer.WithInstance(instance),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithConsumerOrder(orderly),
		consumer.WithPullInterval(0),
		consumer.WithPullBatchSize(32),
		consumer.WithConsumeMessageBatchMaxSize(16),
	)
	if err != nil {
		return err
	}
	err = c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: tag},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			time.Sleep(delay * time.Duration(len(msgs)))
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				d := delivery{ID: m.GetKeys(), Tag: m.GetTags(), Offset: m.QueueOffset, Body: m.Body, Reconsume: m.ReconsumeTimes,
					At: time.Now().UnixNano()}
				if m.Queue != nil {
					d.Queue = fmt.Sprintf("%s/%d", m.Queue.BrokerName, m.Queue.QueueId)
				}
				if err := out.Encode(d); err != nil {
					return consumer.SuspendCurrentQueueAMoment, err
				}
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	err = c.Shutdown()
	mu.Lock()
	defer mu.Unlock()
	if encErr := out.Encode(map[string]bool{"closed": true}); err == nil {
		err = encErr
	}
	return err
}
