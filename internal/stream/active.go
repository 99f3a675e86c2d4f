package stream

import (
	"hash/maphash"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
)

// maxTracked bounds the devices the active gauges track (memory); beyond it
// new devices are not counted until others expire.
const maxTracked = 200000

// active approximates, from the stream's own view of the log, how many pages
// and sessions are open per org: a device is in an active session when its
// last event is less than session_idle of log time old, and on an active page
// when, in addition, it has had a page or screen call and its last event is
// less than page_idle old. It is not the sessionizer's state (the stream
// reads nothing of the batch pipeline) and restarts empty.
type active struct {
	pageIdle, sessionIdle int64
	devs                  map[string]map[uint64]devState // org -> hash of the device id
	lastOrg               string                         // org of lastDevs, the previous event's
	lastDevs              map[uint64]devState
	seed                  maphash.Seed
	n                     int
	watermark             int64 // largest record time seen
	lastSweep             int64
	pages, sessions       *prometheus.GaugeVec
}

type devState struct {
	last    int64
	hasPage bool
}

func newActive(pageIdle, sessionIdle time.Duration, pages, sessions *prometheus.GaugeVec) *active {
	return &active{pageIdle: int64(pageIdle), sessionIdle: int64(sessionIdle), devs: map[string]map[uint64]devState{},
		seed: maphash.MakeSeed(), pages: pages, sessions: sessions}
}

func (a *active) observe(r *event.Record) {
	a.watermark = max(a.watermark, r.Time)
	if r.Kind == event.KindEvent {
		e := &r.Event
		m := a.lastDevs
		if m == nil || e.Org != a.lastOrg {
			if m = a.devs[e.Org]; m == nil {
				m = map[uint64]devState{}
				a.devs[e.Org] = m
			}
			a.lastOrg, a.lastDevs = e.Org, m
		}
		// Devices are keyed by a 64-bit hash of their id, not the id: a
		// lookup then compares integers instead of reading a string
		// elsewhere in memory (most of this function's time), and the map
		// keeps no event's strings alive. Two devices of one org sharing
		// a hash (odds ~1e-9 at maxTracked) would count as one.
		k := maphash.String(a.seed, e.Device)
		d, ok := m[k]
		if !ok {
			if a.n >= maxTracked {
				return
			}
			a.n++
		}
		if d.last != 0 && e.ReceivedAt-d.last >= a.sessionIdle {
			d.hasPage = false // a new session
		}
		d.last = max(d.last, e.ReceivedAt)
		d.hasPage = d.hasPage || event.StartsPage(e.Type)
		m[k] = d
	}
	if a.watermark-a.lastSweep >= int64(time.Second) {
		a.sweep()
	}
}

// sweep forgets expired devices and sets the gauges.
func (a *active) sweep() {
	a.lastSweep = a.watermark
	for org, m := range a.devs {
		var pages, sessions int
		for dev, d := range m {
			age := a.watermark - d.last
			if age >= a.sessionIdle {
				delete(m, dev)
				a.n--
				continue
			}
			sessions++
			if d.hasPage && age < a.pageIdle {
				pages++
			}
		}
		a.pages.WithLabelValues(org).Set(float64(pages))
		a.sessions.WithLabelValues(org).Set(float64(sessions))
	}
}
