package loadgen

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"time"
)

// generator builds the batches of one worker. It owns its devices, so their
// page state needs no lock; with fewer devices than workers, workers share
// devices (like two browser tabs).
type generator struct {
	o       *Options
	rng     *rand.Rand
	devices []device
	buf     []byte // the batch's JSON
	ctx     []byte // scratch: one event's context object
	gzBuf   bytes.Buffer
	gz      *gzip.Writer
}

type device struct {
	anonymousID string
	userID      string // "" for anonymous visitors
	userAgent   string
	locale      string
	page        int // index in pages; -1 before the first page call
	product     int // product id when page is a product page
	referrer    string
}

func newGenerator(o *Options, worker int) *generator {
	g := &generator{o: o, rng: rand.New(rand.NewPCG(o.Seed, uint64(worker)))}
	var ids []int
	if o.Devices >= o.Connections {
		for d := worker; d < o.Devices; d += o.Connections {
			ids = append(ids, d)
		}
	} else {
		ids = []int{worker % o.Devices}
	}
	for _, d := range ids {
		g.devices = append(g.devices, newDevice(o.RunID, o.Seed, d))
	}
	if o.Gzip {
		g.gz, _ = gzip.NewWriterLevel(&g.gzBuf, gzip.BestSpeed)
	}
	return g
}

// newDevice derives device d's identity from the run, so that every worker
// sharing it sees the same one.
func newDevice(runID string, seed uint64, d int) device {
	h := fnv.New64a()
	h.Write([]byte(runID))
	r := rand.New(rand.NewPCG(h.Sum64()^seed, uint64(d)))
	a, b := r.Uint64(), r.Uint64()
	dev := device{
		anonymousID: fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x",
			a>>32, a>>16&0xffff, a&0xfff, 0x8000|b>>48&0x3fff, b&0xffffffffffff),
		userAgent: userAgents[r.IntN(len(userAgents))],
		locale:    locales[r.IntN(len(locales))],
		page:      -1,
		referrer:  externalReferrers[r.IntN(len(externalReferrers))],
	}
	if r.IntN(10) < 4 {
		dev.userID = fmt.Sprintf("user-%s-%d", runID, d)
	}
	return dev
}

const site = "https://shop.example.com"

type page struct {
	path, name, title string
}

var pages = []page{
	{"/", "Home", "Example Shop: outdoor gear"},
	{"/products/%d", "Product", "Trail Runner %d | Example Shop"},
	{"/products/%d", "Product", "Trail Runner %d | Example Shop"},
	{"/products/%d", "Product", "Trail Runner %d | Example Shop"},
	{"/category/shoes", "Category", "Shoes | Example Shop"},
	{"/category/jackets", "Category", "Jackets | Example Shop"},
	{"/search", "Search", "Search results | Example Shop"},
	{"/cart", "Cart", "Your cart | Example Shop"},
	{"/checkout", "Checkout", "Checkout | Example Shop"},
	{"/blog/packing-list", "Blog", "The ultralight packing list | Example Shop"},
	{"/pricing", "Pricing", "Membership | Example Shop"},
	{"/account", "Account", "Your account | Example Shop"},
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
}

var locales = []string{"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP"}

var externalReferrers = []string{"https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/", "", ""}

var trackEvents = []string{
	"Product Viewed", "Product Viewed", "Product Added", "Search Performed",
	"Button Clicked", "Button Clicked", "Checkout Started", "Order Completed", "Signed Up",
}

// batch returns the request body for events first..first+n-1, built at now.
// The result is a new slice: the HTTP transport may still read a request body
// after the response arrived.
func (g *generator) batch(first int64, n int, now time.Time) []byte {
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z07:00") // as analytics.js: milliseconds
	sentNs := now.UnixNano()
	b := append(g.buf[:0], `{"batch":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = g.event(b, first+int64(i), ts, sentNs)
	}
	b = append(b, `],"sentAt":`...)
	b = appendString(b, ts)
	b = append(b, '}')
	g.buf = b
	if g.gz == nil {
		return bytes.Clone(b)
	}
	g.gzBuf.Reset()
	g.gz.Reset(&g.gzBuf)
	g.gz.Write(b) // writes to a bytes.Buffer do not fail
	g.gz.Close()
	return bytes.Clone(g.gzBuf.Bytes())
}

// event appends one event of about EventBytes: the essential fields first,
// then optional context fields (library, userAgent) as far as they fit, then
// properties.lg_pad up to the size. At the default 300 bytes a track call is
// about 320 bytes and a page call 370 (nothing optional fits).
func (g *generator) event(b []byte, seq int64, ts string, sentNs int64) []byte {
	start := len(b)
	d := &g.devices[g.rng.IntN(len(g.devices))]
	isPage := d.page < 0 || g.rng.Float64() < g.o.PageRatio
	if isPage {
		if d.page >= 0 {
			d.referrer = site + d.path()
		}
		d.page = g.rng.IntN(len(pages))
		d.product = 1 + g.rng.IntN(500)
	}

	var name string
	if isPage {
		name = pages[d.page].name
		b = append(b, `{"type":"page","name":`...)
	} else {
		name = trackEvents[g.rng.IntN(len(trackEvents))]
		b = append(b, `{"type":"track","event":`...)
	}
	b = appendString(b, name)
	b = append(b, `,"messageId":"`...)
	b = append(b, g.o.RunID...)
	b = append(b, '-')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","anonymousId":"`...)
	b = append(b, d.anonymousID...)
	b = append(b, '"')
	if d.userID != "" {
		b = append(b, `,"userId":`...)
		b = appendString(b, d.userID)
	}
	b = append(b, `,"timestamp":"`...)
	b = append(b, ts...)
	b = append(b, `","properties":{"lg_sent_ns":`...)
	b = strconv.AppendInt(b, sentNs, 10)
	if isPage {
		b = append(b, `,"path":`...)
		b = appendString(b, d.path())
		b = append(b, `,"url":`...)
		b = appendString(b, site+d.path())
		b = append(b, `,"title":`...)
		b = appendString(b, d.title())
		if d.referrer != "" {
			b = append(b, `,"referrer":`...)
			b = appendString(b, d.referrer)
		}
	} else {
		b = g.trackProperties(b, name, d)
	}

	// The context: for a track call the page it happened on, then what fits.
	c := append(g.ctx[:0], `{"locale":"`...)
	c = append(c, d.locale...)
	c = append(c, '"')
	if !isPage {
		c = append(c, `,"page":{"path":`...)
		c = appendString(c, d.path())
		c = append(c, '}')
	}
	// A field fits if it leaves the size exact or room for the padding.
	const padOverhead = len(`,"lg_pad":""`)
	size := func() int { return len(b) - start + len(`},"context":`) + len(c) + len(`}}`) }
	for _, f := range [...]string{library, `"userAgent":"` + d.userAgent + `"`} {
		if gap := g.o.EventBytes - (size() + 1 + len(f)); gap == 0 || gap >= padOverhead {
			c = append(c, ',')
			c = append(c, f...)
		}
	}
	c = append(c, '}')
	g.ctx = c

	if pad := g.o.EventBytes - (size() - 1) - padOverhead; pad >= 0 {
		b = append(b, `,"lg_pad":"`...)
		for range pad {
			b = append(b, 'x')
		}
		b = append(b, '"')
	}
	b = append(b, `},"context":`...)
	b = append(b, c...)
	return append(b, '}')
}

const library = `"library":{"name":"analytics.js","version":"5.2.0"}`

// trackProperties appends the properties typical of the track event name.
func (g *generator) trackProperties(b []byte, name string, d *device) []byte {
	price := func(b []byte, key string) []byte {
		b = append(b, `,"`...)
		b = append(b, key...)
		b = append(b, `":`...)
		return strconv.AppendFloat(b, float64(999+g.rng.IntN(30000))/100, 'f', 2, 64)
	}
	switch name {
	case "Product Viewed", "Product Added":
		b = append(b, `,"product_id":"sku-`...)
		b = strconv.AppendInt(b, int64(d.product), 10)
		b = append(b, '"')
		b = price(b, "price")
		if name == "Product Added" {
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, int64(1+g.rng.IntN(3)), 10)
		}
	case "Search Performed":
		b = append(b, `,"query":`...)
		b = appendString(b, searches[g.rng.IntN(len(searches))])
		b = append(b, `,"results":`...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(120)), 10)
	case "Button Clicked":
		b = append(b, `,"button":`...)
		b = appendString(b, buttons[g.rng.IntN(len(buttons))])
	case "Checkout Started", "Order Completed":
		b = append(b, `,"order_id":"o-`...)
		b = strconv.AppendUint(b, g.rng.Uint64()>>40, 36)
		b = append(b, '"')
		b = price(b, "revenue")
		b = append(b, `,"currency":"USD"`...)
	case "Signed Up":
		b = append(b, `,"method":`...)
		b = appendString(b, signupMethods[g.rng.IntN(len(signupMethods))])
	}
	return b
}

var (
	searches      = []string{"rain jacket", "trail shoes", "tent 2 person", "headlamp", "wool socks"}
	buttons       = []string{"add-to-cart", "subscribe", "size-guide", "wishlist", "share"}
	signupMethods = []string{"email", "google", "apple"}
)

func (d *device) path() string {
	p := pages[d.page].path
	if p == "/products/%d" {
		return "/products/" + strconv.Itoa(d.product)
	}
	return p
}

func (d *device) title() string {
	p := pages[d.page]
	if p.path == "/products/%d" {
		return fmt.Sprintf(p.title, d.product)
	}
	return p.title
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
