package destination

import "encoding/json"

// ManifestVersion is the version of the manifest format destinations write.
const ManifestVersion = 1

// Manifest is the commit record of one batch: what a destination holds of
// it, written after the batch's data and read back by the audit and the
// start-up check. Its JSON form is the blob destination's on-disk format
// (<prefix>/_manifests/<batch id>.json); how a destination stores and
// validates it is the destination's.
type Manifest struct {
	Version   int    `json:"version"`
	BatchID   string `json:"batch_id"`
	Org       string `json:"org"`
	Partition int    `json:"partition"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Backfill  bool   `json:"backfill"`
	// Files are sorted by Path.
	Files []File `json:"files"`
	// EventCount is the number of rows in the events files; MinLogOffset and
	// MaxLogOffset bound their log_offset (both 0 when there are none).
	EventCount   int64 `json:"event_count"`
	MinLogOffset int64 `json:"min_log_offset"`
	MaxLogOffset int64 `json:"max_log_offset"`
	// EventIDsSHA256 is the hex SHA-256 of the batch's event ids, sorted
	// bytewise and joined with "\n" (of the empty string when there are none):
	// EventIDsDigest.
	EventIDsSHA256 string `json:"event_ids_sha256"`
}

// File is one data file of a batch.
type File struct {
	Path   string `json:"path"` // relative to the destination's prefix
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // hex, of the file's bytes
}

// Encode returns the manifest's JSON. The bytes are a function of m alone.
func (m *Manifest) Encode() ([]byte, error) {
	files := m.Files
	if files == nil {
		files = []File{} // "files": [] rather than null
	}
	mm := *m
	mm.Files = files
	b, err := json.MarshalIndent(&mm, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// StoredFile is a data file as a destination lists it: the batch it belongs
// to (named by its path), its path and the size the destination reports.
// Whether it is committed is its batch's manifest's to say.
type StoredFile struct {
	Batch string
	Path  string
	Size  int64
}
