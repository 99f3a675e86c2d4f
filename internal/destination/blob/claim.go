package blob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tidemark/tidemark/internal/destination"
)

// MarkerKey is the object, at a destination's prefix, that names the one
// destination writing there: its claim on the place (see Claim). Committed,
// Cleanup and readers of the layout ignore it.
const MarkerKey = "_tidemark_destination.json"

// Owner identifies one destination of one tidemark deployment
// (destination.Owner): the marker names it.
type Owner = destination.Owner

// marker is the content of MarkerKey.
type marker struct {
	Version int `json:"version"`
	Owner
	Note string `json:"note"`
}

const markerNote = "tidemark writes this place for the destination named here, and refuses to run a destination whose place belongs to another; do not copy this file"

// SetOwner makes Probe claim the destination's place for o (see Claim),
// and Owned check it. Call it before Probe; without it, neither checks.
func (d *Blob) SetOwner(o Owner) { d.owner = &o }

// ErrClaimed (destination.ErrClaimed) is wrapped by the errors of Claim,
// Probe and Owned when the destination's place belongs to another
// destination: a marker of another owner at its prefix or above it, or below
// it. Its class is ClassClaimed.
var ErrClaimed = destination.ErrClaimed

func claimed(format string, args ...any) error {
	return &classError{ClassClaimed, fmt.Errorf("%w: "+format, append([]any{ErrClaimed}, args...)...)}
}

// Claim makes the destination's place its own (the Owner given to
// SetOwner): it fails with ErrClaimed when a marker of another owner is at
// the prefix, at a prefix above it (this place is inside another's) or
// below it (another's place is inside this one), and otherwise writes the
// marker if there is none (a new place, or a lake written before markers
// existed). The marker is created only if absent (a conditional write), and
// read back, so that of two deployments starting at once only one wins.
func (d *Blob) Claim(ctx context.Context) (err error) {
	defer func() { err = redactErr(err) }()
	if d.owner == nil {
		return errors.New("claim: no owner set")
	}
	if err := d.checkAbove(ctx); err != nil {
		return err
	}
	err = d.list(ctx, "", func(key string) error {
		if key != MarkerKey && path.Base(key) == MarkerKey {
			m, err := d.readMarker(ctx, d.bucket, key)
			who := "another destination"
			if err == nil {
				who = m.Owner.String()
			}
			return claimed("the place of %s (marker %s) is inside this destination's place; "+
				"give each destination a place of its own, neither the same nor one inside the other", who, key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrClaimed) {
		err = fmt.Errorf("claim: %w", err)
	}
	if err != nil {
		return err
	}
	m, found, err := d.marker(ctx)
	if err != nil {
		return err
	}
	if !found {
		if err := d.createMarker(ctx); err != nil {
			return fmt.Errorf("claim: write %s: %w", MarkerKey, err)
		}
		// Read back: a store without conditional writes lets the last
		// writer win, and the loser must see it.
		if m, found, err = d.marker(ctx); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("claim: %s written but not found", MarkerKey)
		}
	}
	return d.mine(m)
}

// Owned checks, without writing, that the destination's place is not
// claimed by another owner: the marker at its prefix (if any) names the
// Owner given to SetOwner (an empty ID there matches any id), and no
// marker is above it. Without an owner set it checks nothing. It returns
// an ErrClaimed error when the place is another's, whose message says
// whose.
func (d *Blob) Owned(ctx context.Context) (err error) {
	defer func() { err = redactErr(err) }()
	if d.owner == nil {
		return nil
	}
	if err := d.checkAbove(ctx); err != nil {
		return err
	}
	m, found, err := d.marker(ctx)
	if err != nil || !found {
		return err
	}
	return d.mine(m)
}

// mine returns nil if m names d's owner, else an ErrClaimed error.
func (d *Blob) mine(m marker) error {
	o := *d.owner
	switch {
	case m.Org == o.Org && m.Destination == o.Destination && (m.ID == o.ID || o.ID == ""):
		return nil
	case m.Org == o.Org && m.Destination == o.Destination:
		return claimed("the place is claimed by %s of another tidemark (another data directory: marker %s has id %s, this data directory %s); "+
			"two deployments writing one place would take each other's batches for their own, and a new data directory's batch numbers restart, "+
			"so its events would be skipped as already committed: point this destination at a place of its own "+
			"(or restore the data directory that wrote here)", m.Owner, MarkerKey, m.ID, o.ID)
	}
	return claimed("the place is claimed by %s (marker %s); give each destination a place of its own, "+
		"neither the same nor one inside the other", m.Owner, MarkerKey)
}

// checkAbove fails with ErrClaimed if a marker is at a prefix above the
// destination's (for file://, in a parent directory of its real path).
func (d *Blob) checkAbove(ctx context.Context) error {
	if d.dir != "" {
		real, err := filepath.EvalSymlinks(d.dir)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		up := ""
		for p := filepath.Dir(real); ; p = filepath.Dir(p) {
			up += "../"
			data, err := os.ReadFile(filepath.Join(p, MarkerKey))
			if err == nil {
				return claimed("the place is inside the place of %s (marker %s%s)", markerOwner(data), up, MarkerKey)
			}
			if filepath.Dir(p) == p {
				return nil
			}
		}
	}
	up := ""
	for p := d.prefix; p != ""; {
		i := strings.LastIndexByte(p, '/')
		p = p[:max(i, 0)]
		up += "../"
		key := MarkerKey
		if p != "" {
			key = p + "/" + MarkerKey
		}
		data, err := d.root.ReadAll(ctx, key)
		switch {
		case err == nil:
			return claimed("the place is inside the place of %s (marker %s%s)", markerOwner(data), up, MarkerKey)
		case gcerrors.Code(err) != gcerrors.NotFound:
			return fmt.Errorf("claim: read %s: %w", key, err)
		}
	}
	return nil
}

func markerOwner(data []byte) string {
	var m marker
	if json.Unmarshal(data, &m) != nil || m.Org == "" {
		return "another destination"
	}
	return m.Owner.String()
}

// marker reads the marker at the prefix; found is false when there is none.
func (d *Blob) marker(ctx context.Context) (m marker, found bool, err error) {
	m, err = d.readMarker(ctx, d.bucket, MarkerKey)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("claim: %w", err)
	}
	return m, true, nil
}

func (d *Blob) readMarker(ctx context.Context, b *blob.Bucket, key string) (marker, error) {
	r, err := b.NewReader(ctx, key, readerOptions)
	if err != nil {
		return marker{}, err
	}
	defer r.Close()
	var m marker
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	if err := dec.Decode(&m); err != nil || m.Version != 1 || m.Org == "" || m.Destination == "" {
		// Not written by tidemark: still a claim, of someone unknown.
		return marker{}, claimed("%s is not a tidemark destination marker; this place may belong to another destination", key)
	}
	return m, nil
}

// createMarker writes d's marker at the prefix unless one exists.
func (d *Blob) createMarker(ctx context.Context) error {
	data, err := json.MarshalIndent(marker{Version: 1, Owner: *d.owner, Note: markerNote}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if d.dir != "" {
		return createFile(filepath.Join(d.dir, MarkerKey), data)
	}
	// Upload, not WriteAll: azureblob's streaming writer panics in gocloud
	// v0.47 when an upload fails (see put), as a conditional write may.
	err = d.bucket.Upload(ctx, MarkerKey, bytes.NewReader(data), &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return nil // another marker won; the read-back tells whose
	}
	return err
}

// createFile creates name with data, durably, unless it exists: a hard link
// of a synced temp file, which fails if name exists, even between processes
// (fileblob's IfNotExist checks only within one process).
func createFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), name); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(filepath.Dir(name))
}
