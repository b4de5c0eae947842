package jetstream_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/forward/jetstream"
)

// Forward the records of a kernel ring pinned by a BPF program's loader to
// a JetStream stream capturing ringo.>, until SIGTERM. Connect comes first:
// if the server, the credentials or the stream are wrong, nothing is
// consumed.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sink, err := jetstream.Connect(ctx, jetstream.Config{URL: "nats://127.0.0.1:4222", Subject: "ringo.{host}.{ring}"})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	ring, err := ringo.OpenPinned("/sys/fs/bpf/events")
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	rd, err := ringo.NewReader(ring)
	if err != nil {
		log.Fatal(err)
	}
	defer rd.Close()
	fw, err := forward.New(rd, sink, forward.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := fw.Run(ctx); err != context.Canceled {
		log.Fatal(err)
	}
	log.Printf("%+v", fw.Stats())
}
