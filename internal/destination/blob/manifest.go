package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// ManifestVersion is the version of the manifest format written by Write.
const ManifestVersion = destination.ManifestVersion

// maxManifestSize bounds what Manifests reads; a real manifest lists at most
// a few files per table and hour of its batch.
const maxManifestSize = 1 << 20

// Manifest is the commit record of one batch, stored as JSON at
// <prefix>/_manifests/<batch id>.json after the batch's data files. Its
// type is the destination level's; its keys and validation are blob's.
type Manifest = destination.Manifest

// File is one data file of a batch.
type File = destination.File

// DecodeManifest parses and validates a manifest. It rejects unknown fields,
// trailing data, an unknown version and any inconsistency between the batch
// id, sequence numbers, file paths and counts.
func DecodeManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("decode manifest: data after the JSON object")
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	if err := validateManifest(&m); err != nil {
		return Manifest{}, fmt.Errorf("invalid manifest %q: %w", m.BatchID, err)
	}
	return m, nil
}

func validateManifest(m *Manifest) error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("unsupported version %d (want %d)", m.Version, ManifestVersion)
	}
	if m.Partition < 0 {
		return fmt.Errorf("negative partition %d", m.Partition)
	}
	if m.FirstSeq > m.LastSeq {
		return fmt.Errorf("first_seq %d > last_seq %d", m.FirstSeq, m.LastSeq)
	}
	if m.Backfill {
		if m.FirstSeq != 0 || m.LastSeq != 0 {
			return errors.New("backfill batch with pipeline sequence numbers")
		}
		if m.EventCount == 0 {
			return errors.New("backfill batch without events")
		}
		if want := destination.BackfillBatchID(m.Partition, m.MinLogOffset, m.MaxLogOffset, m.EventIDsSHA256); m.BatchID != want {
			return fmt.Errorf("batch_id does not match partition, log offsets and event id digest (want %q)", want)
		}
	} else if want := destination.BatchID(m.Partition, m.FirstSeq, m.LastSeq); m.BatchID != want {
		return fmt.Errorf("batch_id does not match partition and sequence numbers (want %q)", want)
	}
	if m.Org == "" {
		return errors.New("empty org")
	}
	var events int64
	for i, f := range m.Files {
		if err := validateFile(&f, m.BatchID); err != nil {
			return fmt.Errorf("file %d: %w", i, err)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("file %d: path %q not after %q", i, f.Path, m.Files[i-1].Path)
		}
		if i > 0 && extOf(f.Path) != extOf(m.Files[0].Path) {
			return fmt.Errorf("file %d: files of one batch in two formats", i)
		}
		if f.Table == format.Events {
			events += f.Rows
		}
	}
	if m.EventCount != events {
		return fmt.Errorf("event_count %d, but the events files hold %d rows", m.EventCount, events)
	}
	if m.EventCount == 0 {
		if m.MinLogOffset != 0 || m.MaxLogOffset != 0 {
			return errors.New("log offsets set without events")
		}
		if m.EventIDsSHA256 != emptySHA256 {
			return errors.New("event_ids_sha256 of no events is not the digest of the empty string")
		}
		return nil
	}
	if m.MinLogOffset < 0 || m.MinLogOffset > m.MaxLogOffset {
		return fmt.Errorf("bad log offset range %d..%d", m.MinLogOffset, m.MaxLogOffset)
	}
	if !isSHA256(m.EventIDsSHA256) {
		return fmt.Errorf("event_ids_sha256 %q is not a lowercase hex SHA-256", m.EventIDsSHA256)
	}
	return nil
}

func validateFile(f *File, batchID string) error {
	table, hour, name, ok := splitDataPath(f.Path)
	if !ok {
		return fmt.Errorf("path %q is not <table>/dt=YYYY-MM-DD/hr=HH/<batch id><ext>", f.Path)
	}
	if table != f.Table {
		return fmt.Errorf("path %q is not in table %q", f.Path, f.Table)
	}
	ext := extOf(name)
	if ext == "" || name != batchID+ext || f.Path != dataPath(table, hour, batchID, ext) {
		return fmt.Errorf("path %q is not a data file of batch %s", f.Path, batchID)
	}
	if f.Rows < 1 || f.Bytes < 1 {
		return fmt.Errorf("%s: %d rows, %d bytes", f.Path, f.Rows, f.Bytes)
	}
	if !isSHA256(f.SHA256) {
		return fmt.Errorf("%s: sha256 %q is not a lowercase hex SHA-256", f.Path, f.SHA256)
	}
	return nil
}

var emptySHA256 = hex.EncodeToString(sha256.New().Sum(nil))

func isSHA256(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// eventIDsDigest is destination.EventIDsDigest.
func eventIDsDigest(ids []string) string { return destination.EventIDsDigest(ids) }

// Object key layout, relative to the destination's prefix.

const manifestDir = "_manifests/"

var tables = []string{format.Events, format.Pages, format.Sessions}

func manifestKey(batchID string) string { return manifestDir + batchID + ".json" }

// partitionPrefix is how every batch id of a partition starts: "p03-".
// BatchID pads to at least two digits, so "p03-" never matches "p030-...".
func partitionPrefix(partition int) string { return fmt.Sprintf("p%02d-", partition) }

// dataPath is <table>/dt=YYYY-MM-DD/hr=HH/<batch id><ext>.
func dataPath(table string, hour time.Time, batchID, ext string) string {
	return table + "/dt=" + hour.Format("2006-01-02") + "/hr=" + hour.Format("15") + "/" + batchID + ext
}

// splitDataPath parses a path made by dataPath.
func splitDataPath(p string) (table string, hour time.Time, name string, ok bool) {
	parts := strings.Split(p, "/")
	if len(parts) != 4 || !slices.Contains(tables, parts[0]) {
		return "", time.Time{}, "", false
	}
	dt, ok1 := strings.CutPrefix(parts[1], "dt=")
	hr, ok2 := strings.CutPrefix(parts[2], "hr=")
	if !ok1 || !ok2 || len(hr) != 2 {
		return "", time.Time{}, "", false
	}
	day, err := time.Parse("2006-01-02", dt)
	if err != nil {
		return "", time.Time{}, "", false
	}
	h, err := strconv.Atoi(hr)
	if err != nil || h < 0 || h > 23 {
		return "", time.Time{}, "", false
	}
	return parts[0], day.Add(time.Duration(h) * time.Hour), parts[3], true
}

// ParseBatchName parses the name of a data file or manifest key's base,
// without its extension: a pipeline batch id (pNN-first-last) or a backfill
// batch id (bf-pNN-min-max-digest). It checks the form, not a manifest.
func ParseBatchName(id string) (partition int, backfill bool, ok bool) {
	if p, _, _, ok := parseBatchID(id); ok {
		return p, false, true
	}
	rest, ok := strings.CutPrefix(id, "bf-")
	if !ok {
		return 0, false, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 4 || len(f[0]) < 3 || f[0][0] != 'p' || len(f[3]) != 16 || strings.Trim(f[3], "0123456789abcdef") != "" {
		return 0, false, false
	}
	pn, err1 := strconv.Atoi(f[0][1:])
	lo, err2 := strconv.ParseInt(f[1], 10, 64)
	hi, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pn < 0 || lo < 0 || lo > hi ||
		destination.BackfillBatchID(pn, lo, hi, f[3]) != id {
		return 0, false, false
	}
	return pn, true, true
}

// extOf returns the data file extension name ends with, or "".
func extOf(name string) string {
	for _, ext := range format.Exts() {
		if strings.HasSuffix(name, ext) {
			return ext
		}
	}
	return ""
}

// parseBatchID is the inverse of destination.BatchID; it accepts only the
// canonical form.
func parseBatchID(id string) (partition int, first, last uint64, ok bool) {
	p, rest, ok1 := strings.Cut(id, "-")
	f, l, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || len(p) < 3 || p[0] != 'p' {
		return 0, 0, 0, false
	}
	pn, err1 := strconv.Atoi(p[1:])
	fn, err2 := strconv.ParseUint(f, 10, 64)
	ln, err3 := strconv.ParseUint(l, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pn < 0 || fn > ln ||
		destination.BatchID(pn, fn, ln) != id {
		return 0, 0, 0, false
	}
	return pn, fn, ln, true
}
