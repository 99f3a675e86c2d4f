// Package archtest holds no code: its test checks the package layering that
// docs/architecture.md draws, from the imports of the module's production
// Go files (tests excluded), so a change that breaks a seam fails the suite.
package archtest
