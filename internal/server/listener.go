package server

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// refusal is written to a connection accepted beyond the limit: a complete
// HTTP/1.1 response, so that a client sees why rather than a reset.
var refusal = func() []byte {
	const body = "too many open connections (http.max_connections); retry later\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// maxRefusing bounds the refused connections being answered at once; past
// it they are closed without an answer, so that refusing cannot itself hold
// file descriptors without bound.
const maxRefusing = 64

// limitListener bounds the connections open at once. Unlike
// netutil.LimitListener, which stops accepting (new clients then wait in the
// kernel's backlog, unanswered, until a slot frees), it accepts every
// connection and answers those beyond the limit 503 with Retry-After at
// once, so that a client is told what happened while slow clients hold the
// slots until the server's timeouts close them.
type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing atomic.Int64
	refused  prometheus.Counter
}

func newLimitListener(ln net.Listener, max int, reg prometheus.Registerer) *limitListener {
	l := &limitListener{Listener: ln, max: int64(max),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_http_refused_connections_total",
			Help: "Connections answered 503 and closed because http.max_connections were open."})}
	reg.MustRegister(l.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_http_open_connections",
		Help: "Open HTTP connections (at most http.max_connections)."}, func() float64 { return float64(l.open.Load()) }))
	return l
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Inc()
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			c.Close()
			continue
		}
		go func() { // never block Accept on a client that does not read
			defer l.refusing.Add(-1)
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write(refusal)
			c.Close()
		}()
	}
}

// limitConn frees its slot when closed (once, however often Close is called).
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
