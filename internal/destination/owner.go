package destination

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// Owner identifies one destination of one tidemark deployment: the org, the
// destination's name, and a random id that the deployment keeps in its data
// directory, so that two deployments (or a new data directory on an old
// lake) with the same org and destination names are told apart. A
// destination that can claim its place (the blob destination's marker)
// refuses to write a place claimed by another owner.
type Owner struct {
	Org         string `json:"org"`
	Destination string `json:"destination"`
	ID          string `json:"id"`
}

func (o Owner) String() string { return fmt.Sprintf("org %q destination %q", o.Org, o.Destination) }

// NewOwnerID returns a fresh random owner id (32 hex digits).
func NewOwnerID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrClaimed is wrapped by the errors of a destination whose place belongs
// to another destination (another Owner).
var ErrClaimed = errors.New("place claimed by another destination")
