// Package config loads, defaults and validates tidemark's configuration: one
// YAML file, documented key by key in tidemark.example.yaml at the repository
// root.
//
// # Decoding
//
// Load decodes strictly: an unknown key, a duplicate key, a value of the wrong
// shape (a list where a mapping belongs) or a second YAML document in the file
// is an error. Keys that are absent keep their default (Default, and
// DefaultDestination for each destination); a key present with an explicit
// zero or negative value is not replaced by the default but rejected by
// Validate, because a limit silently zeroed by a config change is how delivery
// stalls start. An explicit null (`key:` or `key: ~`) counts as absent.
//
// Durations are Go duration strings with a unit ("30m", "1.5s", "168h"); a
// bare number is rejected, because "30" could mean seconds or minutes. Sizes
// are a number of bytes or a number with a unit: B, KB, MB, GB, TB (powers of
// 1000) or KiB, MiB, GiB, TiB (powers of 1024).
//
// # Environment variables
//
// ${NAME} inside any scalar value is replaced by the environment variable NAME
// before the value is decoded, so secrets need not be written in the file:
//
//	write_keys: ["${TIDEMARK_WRITE_KEY}"]
//
// An unset variable is an error naming it (a variable set to the empty string
// expands to the empty string). NAME is [A-Za-z_][A-Za-z0-9_]*. "$${" is a
// literal "${"; a "$" not followed by "{" is kept as is. Expansion happens on
// the parsed YAML value, never on the file text, so a variable's value cannot
// change the document's structure, and it is never expanded twice. Keys and
// comments are not expanded.
//
// # Errors
//
// Every problem is reported, not only the first: Load (unless the file cannot
// be read) and Validate return errors.Join of *FieldError values, one per
// problem and one per line of Error(), each naming the file, the line when
// known, and the key path in the form used by the YAML file:
//
//	tidemark.yaml:14: orgs[0].destinations[1].flush.max_age: must be greater than 0, got 0s
//
// Error messages never contain a write key.
//
// # Secrets
//
// Write keys are Secret values: they print as "[redacted]" with every fmt
// verb and marshal as "[redacted]" to YAML, JSON and text, so a Config can be
// logged or dumped safely; Reveal returns the value. A marshalled Config is
// therefore for display only and does not load back.
package config
