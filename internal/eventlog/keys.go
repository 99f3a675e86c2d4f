package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
)

// Every key of both stores is built in this file (the layout is in
// doc.go). p is a partition, 2 bytes big endian; numbers are 8 bytes big
// endian.

// Key returns the store key of the segment of partition whose first record
// has offset offset.
func Key(partition int, offset uint64) []byte { return numberedKey('L', partition, offset) }

// numberedKey is prefix, p, n: the key of a log or output segment.
func numberedKey(prefix byte, p int, n uint64) []byte {
	k := make([]byte, 11)
	k[0] = prefix
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	binary.BigEndian.PutUint64(k[3:], n)
	return k
}

func partitionBounds(partition int) (lo, hi []byte) {
	return Key(partition, 0), Key(partition+1, 0)[:3]
}

func keyOffset(k []byte) uint64 { return binary.BigEndian.Uint64(k[3:]) }

// metaKey is the key of the log store's metadata value name.
func metaKey(name string) []byte { return append([]byte("M"), name...) }

// stateKey is the key of a sessionizer state entry of partition p: 'S', p,
// kind, then parts.
func stateKey(p int, kind byte, parts ...[]byte) []byte {
	n := 4
	for _, x := range parts {
		n += len(x)
	}
	k := make([]byte, 4, n)
	k[0] = 'S'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	k[3] = kind
	for _, x := range parts {
		k = append(k, x...)
	}
	return k
}

// Kinds of sessionizer state entry (the byte after 'S' p).
const (
	kindHeader = 'h'
	kindDevice = 'd'
	kindIndex  = 'x'
	// kindDedupe keys name an event by org, device and messageId;
	// kindDedupeLegacy keys, written by earlier versions that deduplicated
	// by org and messageId alone, are still read (see sessionStore.Seen)
	// until the sweep has removed the last of them, one dedupe window after
	// the upgrade.
	kindDedupeLegacy = 'm'
	kindDedupe       = 'n'
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// dedupeKeyLen is the length of a kindDedupe key.
const dedupeKeyLen = 4 + 16

// appendDedupeKey appends the dedupe key of (org, device, id) to k, using
// buf as scratch space, and returns both. The key is the state key prefix
// and the first 16 bytes of the SHA-256 of uvarint(len(org)) org
// uvarint(len(device)) device id: unambiguous whatever bytes the three hold,
// and 20 bytes however long they are (an exact key of a UUID device and an
// analytics.js messageId is about 90, and the index holds one per event of
// the window). Two events collide with probability 2^-128; a collision
// would drop the later one, and the audit, which compares device and
// messageId exactly, would report it missing.
func appendDedupeKey(k, buf []byte, p int, org, device, id string) ([]byte, []byte) {
	buf = binary.AppendUvarint(buf[:0], uint64(len(org)))
	buf = append(buf, org...)
	buf = binary.AppendUvarint(buf, uint64(len(device)))
	buf = append(append(buf, device...), id...)
	sum := sha256.Sum256(buf)
	k = append(k, 'S', byte(p>>8), byte(p), kindDedupe)
	return append(k, sum[:16]...), buf
}

// appendLegacyDedupeKey appends the kindDedupeLegacy key of (org, id) to k.
func appendLegacyDedupeKey(k []byte, p int, org, id string) []byte {
	k = append(append(append(k, 'S', byte(p>>8), byte(p), kindDedupeLegacy), org...), 0)
	return append(k, id...)
}

// outputKey is the store key of partition p's output segment whose first
// item has sequence number seq (see State.ScanOutputs).
func outputKey(p int, seq uint64) []byte { return numberedKey('O', p, seq) }

// outputBounds bounds partition p's output segments.
func outputBounds(p int) (lo, hi []byte) { return outputKey(p, 0), outputKey(p+1, 0)[:3] }

// progressKey is the key of a destination's local progress record of
// partition p: 'T' org 0 name 0 p.
func progressKey(org, name string, p int) []byte {
	k := append([]byte("T"), org...)
	k = append(k, 0)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint16(k, uint16(p))
}

// cursorKey is the key of a webhook's cursor of partition p in the stream
// store (Cursors): 'c' org 0 name 0 p.
func cursorKey(org, name string, p int) []byte {
	k := []byte("c" + org + "\x00" + name + "\x00")
	return binary.BigEndian.AppendUint16(k, uint16(p))
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}
