package eventlog

import (
	"os"
	"path/filepath"
)

// Exists reports whether dir holds a log store (Open would open it rather
// than create an empty one). Commands that only read, such as an offline
// audit, check it first: a new empty store would look like a clean log.
func Exists(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "store", "log"))
	return err == nil && fi.IsDir()
}
