package sessionize

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every state or output decoding error.
var ErrCorrupt = errors.New("corrupt sessionizer record")

// codecVersion is the state and output format written by this build.
// Version 2 stores entity ids (canonical UUID strings, see entityID) as 16
// bytes instead of 36 characters; version 1 stored every id as a string and
// is still read.
const codecVersion = 2

type enc struct{ b []byte }

func (e *enc) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) str(s string)  { e.b = binary.AppendUvarint(e.b, uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) byte(v byte)   { e.b = append(e.b, v) }
func (e *enc) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}
func (d *dec) bool() bool       { return d.byte() == 1 }
func (d *dec) fail(what string) { d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what) }

type dec struct {
	b   []byte
	err error
	v   byte // format version being decoded
	// all is the whole input as one string, so that decoded strings are
	// slices of one allocation rather than one allocation each; n is its
	// length (the offset of b in it is n-len(b)).
	all string
	n   int
}

func newDec(b []byte) dec { return dec{b: b, all: string(b), n: len(b)} }

// Id tags (version 2).
const (
	idString = 0 // uvarint length and the bytes
	idUUID   = 1 // 16 bytes of a canonical lowercase UUID string
)

// id encodes an entity id: 16 bytes when it is a canonical lowercase UUID
// (every id entityID makes), else the string.
func (e *enc) id(s string) {
	var u [16]byte
	if parseUUID(s, &u) {
		e.byte(idUUID)
		e.b = append(e.b, u[:]...)
		return
	}
	e.byte(idString)
	e.str(s)
}

func (d *dec) id() string {
	if d.v < 2 {
		return d.str()
	}
	switch d.byte() {
	case idString:
		return d.str()
	case idUUID:
		if d.err != nil {
			return ""
		}
		if len(d.b) < 16 {
			d.fail("id")
			return ""
		}
		s := formatUUID(d.b[:16])
		d.b = d.b[16:]
		return s
	default:
		if d.err == nil {
			d.fail("id tag")
		}
		return ""
	}
}

const hexDigits = "0123456789abcdef"

// uuidHex are the positions of the 16 hex digit pairs of a canonical UUID.
var uuidHex = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

func parseUUID(s string, u *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	for j, i := range uuidHex {
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi < 0 || lo < 0 {
			return false
		}
		u[j] = byte(hi<<4 | lo)
	}
	return true
}

// unhex is the value of a lowercase hex digit, -1 otherwise (uppercase
// would not round-trip).
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

func formatUUID(u []byte) string {
	b := []byte("00000000-0000-0000-0000-000000000000")
	for j, i := range uuidHex {
		b[i], b[i+1] = hexDigits[u[j]>>4], hexDigits[u[j]&0xf]
	}
	return string(b)
}

func (d *dec) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	l := d.uint()
	if d.err != nil {
		return ""
	}
	if l > uint64(len(d.b)) {
		d.fail("length")
		return ""
	}
	at := d.n - len(d.b)
	d.b = d.b[l:]
	return d.all[at : at+int(l)]
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return d.err
}

func (e *enc) page(p *Page) {
	e.id(p.ID)
	e.str(p.Type)
	e.str(p.Name)
	e.str(p.URL)
	e.str(p.Path)
	e.str(p.Title)
	e.str(p.Referrer)
	e.str(p.UserID)
	e.int(p.Start)
	e.int(p.Last)
	e.int(p.Events)
}

func (d *dec) page(p *Page) {
	p.ID = d.id()
	p.Type, p.Name, p.URL, p.Path, p.Title, p.Referrer, p.UserID = d.str(), d.str(), d.str(), d.str(), d.str(), d.str(), d.str()
	p.Start, p.Last, p.Events = d.int(), d.int(), d.int()
}

func (e *enc) session(s *Session) {
	e.id(s.ID)
	e.str(s.UserID)
	e.str(s.EntryURL)
	e.str(s.ExitURL)
	e.int(s.Start)
	e.int(s.Last)
	e.int(s.Pages)
	e.int(s.Events)
}

func (d *dec) session(s *Session) {
	s.ID = d.id()
	s.UserID, s.EntryURL, s.ExitURL = d.str(), d.str(), d.str()
	s.Start, s.Last, s.Pages, s.Events = d.int(), d.int(), d.int(), d.int()
}

// MarshalDevice encodes a device's open entities.
func MarshalDevice(dst []byte, dv *Device) []byte {
	e := enc{b: dst}
	e.byte(codecVersion)
	e.int(dv.Bucket)
	e.session(&dv.Session)
	e.bool(dv.Page != nil)
	if dv.Page != nil {
		e.page(dv.Page)
	}
	return e.b
}

// UnmarshalDevice decodes MarshalDevice's output.
func UnmarshalDevice(b []byte) (*Device, error) {
	d := newDec(b)
	if d.v = d.byte(); d.err == nil && (d.v == 0 || d.v > codecVersion) {
		return nil, fmt.Errorf("%w: device version %d", ErrCorrupt, d.v)
	}
	dv := &Device{}
	dv.Bucket = d.int()
	d.session(&dv.Session)
	if d.bool() {
		dv.Page = &Page{}
		d.page(dv.Page)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return dv, nil
}

// MarshalOutput encodes one output item.
func MarshalOutput(dst []byte, o *Output) []byte {
	e := enc{b: dst}
	e.byte(codecVersion)
	e.byte(byte(o.Kind))
	e.int(o.LogTime)
	switch o.Kind {
	case KindEvent:
		e.str(o.Org)
		e.uint(o.Offset)
		e.int(o.Size)
		e.id(o.SessionID)
		e.id(o.PageID)
	case KindPage:
		e.str(o.Org)
		e.str(o.Device)
		e.id(o.SessionID)
		e.str(o.EndReason)
		e.int(o.EndedAt)
		e.page(o.Page)
	case KindSession:
		e.str(o.Org)
		e.str(o.Device)
		e.session(o.Session)
	}
	return e.b
}

// UnmarshalOutput decodes MarshalOutput's output.
func UnmarshalOutput(b []byte) (Output, error) {
	d := newDec(b)
	var o Output
	if d.v = d.byte(); d.err == nil && (d.v == 0 || d.v > codecVersion) {
		return o, fmt.Errorf("%w: output version %d", ErrCorrupt, d.v)
	}
	o.Kind = Kind(d.byte())
	o.LogTime = d.int()
	switch o.Kind {
	case KindEvent:
		o.Org = d.str()
		o.Offset = d.uint()
		o.Size = d.int()
		o.SessionID = d.id()
		o.PageID = d.id()
	case KindPage:
		o.Org, o.Device = d.str(), d.str()
		o.SessionID = d.id()
		o.EndReason = d.str()
		o.EndedAt = d.int()
		o.Page = &Page{}
		d.page(o.Page)
	case KindSession:
		o.Org, o.Device = d.str(), d.str()
		o.Session = &Session{}
		d.session(o.Session)
	case KindWatermark:
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: output kind %d", ErrCorrupt, o.Kind)
		}
	}
	if err := d.finish(); err != nil {
		return Output{}, err
	}
	return o, nil
}
