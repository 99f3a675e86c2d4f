package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// DeadLetter is a batch a webhook did not accept within its retry window (or
// refused permanently), or the record of a poison event. It is one file under
// data_dir/stream/dead-letters/<org>/<webhook>/.
type DeadLetter struct {
	Org         string    `json:"org"`
	Webhook     string    `json:"webhook"`
	Partition   int       `json:"partition"`
	FirstOffset uint64    `json:"first_offset"`
	LastOffset  uint64    `json:"last_offset"`
	Events      int       `json:"events"` // len(Body.events); 0 for a poison record
	FailedAt    time.Time `json:"failed_at"`
	Attempts    int       `json:"attempts"`
	Error       string    `json:"error"`
	// Poison is set for an event the stream could not process (its handler
	// panicked): EventID names it, Body is empty, and replay cannot send it.
	Poison  bool   `json:"poison,omitempty"`
	EventID string `json:"event_id,omitempty"`
	// Body is the request body that was not accepted (a Request).
	Body json.RawMessage `json:"body,omitempty"`
}

// ErrBadDeadLetter is wrapped by every DecodeDeadLetter error.
var ErrBadDeadLetter = errors.New("bad dead letter")

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// DecodeDeadLetter parses and checks one dead-letter file.
func DecodeDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return DeadLetter{}, fmt.Errorf("%w: %v", ErrBadDeadLetter, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return DeadLetter{}, fmt.Errorf("%w: data after the object", ErrBadDeadLetter)
	}
	switch {
	case !namePattern.MatchString(d.Org) || !namePattern.MatchString(d.Webhook):
		return DeadLetter{}, fmt.Errorf("%w: invalid org or webhook name", ErrBadDeadLetter)
	case d.Partition < 0 || d.Partition > 0xffff:
		return DeadLetter{}, fmt.Errorf("%w: partition %d", ErrBadDeadLetter, d.Partition)
	case d.FirstOffset == 0 || d.FirstOffset > d.LastOffset:
		return DeadLetter{}, fmt.Errorf("%w: offsets %d-%d", ErrBadDeadLetter, d.FirstOffset, d.LastOffset)
	}
	if d.Poison {
		if d.Events != 0 || len(d.Body) != 0 {
			return DeadLetter{}, fmt.Errorf("%w: a poison record carries no events", ErrBadDeadLetter)
		}
		return d, nil
	}
	var req Request
	if err := json.Unmarshal(d.Body, &req); err != nil {
		return DeadLetter{}, fmt.Errorf("%w: body: %v", ErrBadDeadLetter, err)
	}
	if req.Org != d.Org || req.Webhook != d.Webhook || len(req.Events) != d.Events || d.Events == 0 {
		return DeadLetter{}, fmt.Errorf("%w: body does not match the header (org, webhook, %d events)", ErrBadDeadLetter, d.Events)
	}
	return d, nil
}

// Request decodes the body of a dead letter that is not poison.
func (d *DeadLetter) Request() (Request, error) {
	var r Request
	err := json.Unmarshal(d.Body, &r)
	return r, err
}

// DeadLetterDir is where dead letters of dataDir live.
func DeadLetterDir(dataDir string) string { return filepath.Join(dataDir, "stream", "dead-letters") }

func deadLetterName(d *DeadLetter) string {
	return fmt.Sprintf("p%03d-%020d-%020d.json", d.Partition, d.FirstOffset, d.LastOffset)
}

// WriteDeadLetter stores d durably under root (see DeadLetterDir): a
// temporary file, fsync, rename, fsync of the directory. Writing the same
// batch again replaces the file.
func WriteDeadLetter(root string, d *DeadLetter) (string, error) {
	dir := filepath.Join(root, d.Org, d.Webhook)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("write dead letter: %w", err)
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return "", fmt.Errorf("write dead letter: %w", err)
	}
	path := filepath.Join(dir, deadLetterName(d))
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write dead letter: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("write dead letter: %w", err)
	}
	if f, err := os.Open(dir); err == nil {
		err = f.Sync()
		f.Close()
		if err != nil {
			return "", fmt.Errorf("write dead letter: sync directory: %w", err)
		}
	}
	return path, nil
}

// StoredDeadLetter is a dead letter and its file.
type StoredDeadLetter struct {
	Path string
	DeadLetter
}

// ListDeadLetters returns the dead letters under root, of org and webhook
// when they are not empty, sorted by org, webhook, partition and offset (so
// that a replay keeps each device's order). Files that do not decode are
// returned as errors naming them, after the good ones.
func ListDeadLetters(root, org, webhook string) ([]StoredDeadLetter, error) {
	var out []StoredDeadLetter
	var errs []error
	err := filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 3 || (org != "" && parts[0] != org) || (webhook != "" && parts[1] != webhook) {
			return nil
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // replayed meanwhile
		}
		if err != nil {
			return err
		}
		d, err := DecodeDeadLetter(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			return nil
		}
		out = append(out, StoredDeadLetter{Path: path, DeadLetter: d})
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list dead letters: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Org != b.Org {
			return a.Org < b.Org
		}
		if a.Webhook != b.Webhook {
			return a.Webhook < b.Webhook
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.FirstOffset < b.FirstOffset
	})
	return out, errors.Join(errs...)
}
