package platform

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ordermesh/ordermesh/internal/platform/bus/bustest"
)

func BenchmarkRawPublishAsyncCE(b *testing.B) {
	s := bustest.Start(b)
	js := s.Bus.JetStream()
	evs := newEvents(b, b.N)
	msgs := make([]*nats.Msg, b.N)
	for i := range evs {
		msgs[i] = evs[i].Msg()
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishMsgAsync(msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	reportRate(b, start)
}
