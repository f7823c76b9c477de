package rabbitmq

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the same pipeline metrics as JetStream's consumers give
// (bus.NewConsumerMetrics, bus.PendingDesc, bus.DLQDepthDesc), so
// dashboards and alerts hold on either engine: events by outcome, handling time, redeliveries, and, read
// from the broker at each scrape, each consumer's lag and the DLQ's depth.
// RabbitMQ does not say how many deliveries await an ack
// (ordermesh_consumer_ack_pending), so that one is JetStream's alone.
type metrics struct {
	events      *prometheus.CounterVec
	handle      *prometheus.HistogramVec
	redelivered *prometheus.CounterVec

	mu   sync.Mutex
	subs []*subscription
}

func newMetrics(b *Broker, reg prometheus.Registerer) *metrics {
	cm := bus.NewConsumerMetrics()
	m := &metrics{events: cm.Events, handle: cm.Handle, redelivered: cm.Redelivered}
	reg.MustRegister(m.events, m.handle, m.redelivered, &collector{b: b, m: m})
	return m
}

func (m *metrics) add(s *subscription) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.subs = append(m.subs, s)
	m.mu.Unlock()
	m.redelivered.WithLabelValues(s.cfg.Name)
}

// observe records a handled batch: its time for each event's type, its
// redeliveries.
func (m *metrics) observe(consumer string, rs []received, took time.Duration) {
	if m == nil {
		return
	}
	for _, r := range rs {
		m.handle.WithLabelValues(consumer, r.ev.Type).Observe(took.Seconds())
		if r.delivered > 1 {
			m.redelivered.WithLabelValues(consumer).Inc()
		}
	}
}

// count records an event's outcome; a type the consumer does not take (a
// forged one) counts as "other", so hostile input cannot grow the metric.
func (m *metrics) count(s *subscription, typ, outcome string) {
	if m == nil {
		return
	}
	if !slices.Contains(s.currentTypes(), typ) {
		typ = "other"
	}
	m.events.WithLabelValues(s.cfg.Name, typ, outcome).Inc()
}

// collector reads the queues' depths at scrape time (a passive declare
// per queue).
type collector struct {
	b *Broker
	m *metrics
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bus.PendingDesc
	ch <- bus.DLQDepthDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c.m.mu.Lock()
	subs := slices.Clone(c.m.subs)
	c.m.mu.Unlock()
	depth := func(queue string) (float64, bool) {
		amqpCh, err := c.b.channel(ctx)
		if err != nil {
			return 0, false
		}
		defer amqpCh.Close()
		q, err := amqpCh.QueueDeclarePassive(queue, true, false, false, false, nil)
		return float64(q.Messages), err == nil
	}
	for _, s := range subs {
		if n, ok := depth(s.queue); ok {
			ch <- prometheus.MustNewConstMetric(bus.PendingDesc, prometheus.GaugeValue, n, s.cfg.Name)
		}
	}
	if n, ok := depth(QueueDLQ); ok {
		ch <- prometheus.MustNewConstMetric(bus.DLQDepthDesc, prometheus.GaugeValue, n)
	}
}
