package backup

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics is what the last backups did.
type metrics struct {
	mu sync.Mutex
	v  values
}

type values struct {
	attempted   bool
	lastOK      bool
	lastTook    time.Duration
	success     bool // a backup has succeeded
	successAt   time.Time
	successSize int64
	successIdx  uint64
	ok, failed  uint64
}

func (m *metrics) record(start time.Time, took time.Duration, info Info, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &m.v
	v.attempted, v.lastOK, v.lastTook = true, err == nil, took
	if err != nil {
		v.failed++
		return
	}
	v.ok++
	v.success, v.successAt, v.successSize, v.successIdx = true, start, info.Size, info.Index
}

func (m *metrics) values() values {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v
}

var (
	descLastSuccessTime = prometheus.NewDesc("ration_backup_last_success_timestamp_seconds",
		"When the last successful backup began (unix seconds); absent until one succeeds.", nil, nil)
	descLastSize = prometheus.NewDesc("ration_backup_last_size_bytes",
		"Size of the last successful backup.", nil, nil)
	descLastIndex = prometheus.NewDesc("ration_backup_last_index",
		"Raft index of the state the last successful backup holds.", nil, nil)
	descLastOK = prometheus.NewDesc("ration_backup_last_success",
		"1 if this node's last backup succeeded, 0 if it failed; absent until it tries one.", nil, nil)
	descLastDuration = prometheus.NewDesc("ration_backup_last_duration_seconds",
		"How long this node's last backup took (write, sync and verify), successful or not.", nil, nil)
	descTotal = prometheus.NewDesc("ration_backups_total",
		"Backups this node attempted, by result (success, failure).", []string{"result"}, nil)
)

// Collector serves the backup metrics of one Backups.
type Collector struct{ b *Backups }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSuccessTime, descLastSize, descLastIndex, descLastOK, descLastDuration, descTotal} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the metrics of the backups
// finished so far.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.b.m.values()
	ch <- prometheus.MustNewConstMetric(descTotal, prometheus.CounterValue, float64(m.ok), "success")
	ch <- prometheus.MustNewConstMetric(descTotal, prometheus.CounterValue, float64(m.failed), "failure")
	if m.attempted {
		ok := 0.0
		if m.lastOK {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, ok)
		ch <- prometheus.MustNewConstMetric(descLastDuration, prometheus.GaugeValue, m.lastTook.Seconds())
	}
	if m.success {
		ch <- prometheus.MustNewConstMetric(descLastSuccessTime, prometheus.GaugeValue, float64(m.successAt.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(descLastSize, prometheus.GaugeValue, float64(m.successSize))
		ch <- prometheus.MustNewConstMetric(descLastIndex, prometheus.GaugeValue, float64(m.successIdx))
	}
}
