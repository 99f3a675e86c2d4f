package stream

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tidemark/tidemark/internal/event"
)

// TestActiveGauges: a device is in an active session while its last event is
// younger than session_idle of log time, on an active page while it also had
// a page call and its last event is younger than page_idle; a gap of
// session_idle starts a session without a page; orgs are counted apart.
func TestActiveGauges(t *testing.T) {
	pages := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "p"}, []string{"org"})
	sessions := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "s"}, []string{"org"})
	a := newActive(10*time.Second, time.Minute, pages, sessions)
	t0 := int64(1000 * time.Second)
	at := func(s int) int64 { return t0 + int64(s)*int64(time.Second) }
	ev := func(s int, org, dev, typ string) {
		a.observe(&event.Record{Kind: event.KindEvent, Time: at(s), Event: event.Event{Org: org, Device: dev, Type: typ, ReceivedAt: at(s)}})
	}
	tick := func(s int) { a.observe(&event.Record{Kind: event.KindTick, Time: at(s)}) }
	check := func(when string, org string, wantPages, wantSessions float64) {
		t.Helper()
		if p, s := testutil.ToFloat64(pages.WithLabelValues(org)), testutil.ToFloat64(sessions.WithLabelValues(org)); p != wantPages || s != wantSessions {
			t.Errorf("%s: org %s pages %v sessions %v, want %v %v", when, org, p, s, wantPages, wantSessions)
		}
	}
	ev(0, "o1", "a", "page")
	ev(0, "o1", "b", "track")
	ev(0, "o2", "a", "screen") // same device id, other org
	ev(1, "o1", "a", "track")
	tick(2)
	check("2s", "o1", 1, 2)
	check("2s", "o2", 1, 1)
	tick(15) // a's last event is 14s old: past page_idle
	check("15s", "o1", 0, 2)
	ev(16, "o1", "b", "page")
	tick(17)
	check("17s", "o1", 1, 2)
	tick(70) // a (last 1s) expired; b (last 16s) still in its session, its page idle
	check("70s", "o1", 0, 1)
	check("70s", "o2", 0, 0)
	ev(77, "o1", "b", "track") // 61s after b's last event: a new session, no page yet
	tick(78)
	check("78s", "o1", 0, 1)
	if a.n != 1 {
		t.Errorf("tracked devices = %d, want 1", a.n)
	}
}
