package bus

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pipeline's Prometheus metrics, per durable consumer:
// events handled by type and outcome, handling time, redeliveries and dead
// letters, and, read from the broker at each scrape, what each consumer
// has still to receive (lag) and to acknowledge, and the DLQ's depth.
type metrics struct {
	events      *prometheus.CounterVec
	handle      *prometheus.HistogramVec
	redelivered *prometheus.CounterVec
	// brokerMaxDeliveries counts events the broker stopped delivering.
	brokerMaxDeliveries *prometheus.CounterVec

	mu        sync.Mutex
	consumers []*Consumer
}

// ConsumerMetrics are the consumers' own metrics, by the same names on
// either engine, so dashboards and alerts hold on both.
type ConsumerMetrics struct {
	Events      *prometheus.CounterVec
	Handle      *prometheus.HistogramVec
	Redelivered *prometheus.CounterVec
}

// NewConsumerMetrics makes them, unregistered.
func NewConsumerMetrics() ConsumerMetrics {
	return ConsumerMetrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordermesh_consumer_events_total",
			Help: "Events a consumer settled, by type and outcome: ok, retry (redelivered later) or dead_letter.",
		}, []string{"consumer", "type", "outcome"}),
		Handle: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ordermesh_consumer_handle_seconds",
			Help:    "Time to handle the batch an event was in (one transaction), by consumer and event type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"consumer", "type"}),
		Redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordermesh_consumer_redeliveries_total",
			Help: "Deliveries of events a consumer had been delivered before (a retry, or a crash before the ack).",
		}, []string{"consumer"}),
	}
}

func newMetrics(b *Bus, reg prometheus.Registerer) *metrics {
	cm := NewConsumerMetrics()
	m := &metrics{events: cm.Events, handle: cm.Handle, redelivered: cm.Redelivered}
	m.brokerMaxDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ordermesh_consumer_broker_max_deliveries_total",
		Help: "Events the broker stopped delivering to a consumer after its MaxDeliver (each is then dead-lettered): a handler that never settles them.",
	}, []string{"consumer"})
	reg.MustRegister(m.events, m.handle, m.redelivered, m.brokerMaxDeliveries, &brokerCollector{b: b, m: m})
	return m
}

func (m *metrics) add(c *Consumer) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.consumers = append(m.consumers, c)
	m.mu.Unlock()
	m.redelivered.WithLabelValues(c.cfg.Name) // from zero, for rate() and alerts
	m.brokerMaxDeliveries.WithLabelValues(c.cfg.Name)
}

var (
	// PendingDesc is a consumer's lag on either engine.
	PendingDesc = prometheus.NewDesc("ordermesh_consumer_pending",
		"Events the consumer has not been delivered yet (its lag): in EVENTS, all partitions together, on JetStream; in its queue on RabbitMQ.", []string{"consumer"}, nil)
	ackPendingDesc = prometheus.NewDesc("ordermesh_consumer_ack_pending",
		"Events delivered to the consumer and not acknowledged yet.", []string{"consumer"}, nil)
	// DLQDepthDesc is the dead letters held, on either engine.
	DLQDepthDesc = prometheus.NewDesc("ordermesh_dlq_depth", "Dead letters in the DLQ (stream on JetStream, queue on RabbitMQ).", nil, nil)
	dlqBytesDesc = prometheus.NewDesc("ordermesh_dlq_bytes", "Bytes the DLQ stream holds.", nil, nil)
	dlqLimitDesc = prometheus.NewDesc("ordermesh_dlq_max_bytes",
		"The DLQ stream's byte limit: once reached, new dead letters are refused; their events stay in EVENTS but stop being redelivered after the broker's MaxDeliver.", nil, nil)
)

// brokerCollector reads the consumers' state from the broker at scrape
// time (a scrape costs one request per durable consumer).
type brokerCollector struct {
	b *Bus
	m *metrics
}

func (bc *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- PendingDesc
	ch <- ackPendingDesc
	ch <- DLQDepthDesc
	ch <- dlqBytesDesc
	ch <- dlqLimitDesc
}

func (bc *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	bc.m.mu.Lock()
	consumers := append([]*Consumer(nil), bc.m.consumers...)
	bc.m.mu.Unlock()
	for _, c := range consumers {
		names := []string{c.cfg.Name}
		if c.cfg.partitioned(bc.b.cfg.Partitioned) {
			names = names[:0]
			for p := range Partitions {
				names = append(names, partitionName(c.cfg.Name, p))
			}
		}
		var pending, ackPending float64
		ok := true
		for _, name := range names {
			cons, err := bc.b.js.Consumer(ctx, StreamEvents, name)
			if err != nil {
				ok = false
				break
			}
			info := cons.CachedInfo()
			pending += float64(info.NumPending)
			ackPending += float64(info.NumAckPending)
		}
		if ok {
			ch <- prometheus.MustNewConstMetric(PendingDesc, prometheus.GaugeValue, pending, c.cfg.Name)
			ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, ackPending, c.cfg.Name)
		}
	}
	if st, err := bc.b.js.Stream(ctx, StreamDLQ); err == nil {
		info := st.CachedInfo()
		ch <- prometheus.MustNewConstMetric(DLQDepthDesc, prometheus.GaugeValue, float64(info.State.Msgs))
		ch <- prometheus.MustNewConstMetric(dlqBytesDesc, prometheus.GaugeValue, float64(info.State.Bytes))
		ch <- prometheus.MustNewConstMetric(dlqLimitDesc, prometheus.GaugeValue, float64(info.Config.MaxBytes))
	}
}
