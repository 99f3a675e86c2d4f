package config

import (
	"fmt"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/registry"
)

// placed is a destination whose URL names a valid location.
type placed struct {
	org, name, url, path string
	loc                  destination.Location
}

// overlaps reports every destination, of any org, whose location is the
// location of an earlier one or contains it or lies inside it (after
// normalising: see registry.Locate). Two destinations in one place would
// take each other's batches (the batch ids carry no org) and files for their
// own: one would skip events as already committed, the audit would count the
// other's rows, and start-up cleanup would delete the other's files.
func (p *problems) overlaps(c *Config) {
	var seen []placed
	for i, o := range c.Orgs {
		for j, d := range o.Destinations {
			if checkURL(d.URL) != "" {
				continue // reported by validate
			}
			path := fmt.Sprintf("orgs[%d].destinations[%d].url", i, j)
			loc, err := registry.Locate(d.URL)
			if err != nil {
				p.add(path, "%v", err)
				continue
			}
			this := placed{org: o.ID, name: d.Name, url: registry.Redact(d.URL), path: path, loc: loc}
			for _, prev := range seen {
				how := ""
				switch {
				case prev.loc.Contains(loc) && loc.Contains(prev.loc):
					how = "the same place as"
				case prev.loc.Contains(loc):
					how = "a place inside"
				case loc.Contains(prev.loc):
					how = "a place containing"
				default:
					continue
				}
				p.add(path, "org %q destination %q (%s) writes %s org %q destination %q (%s, %s): give each destination a place of its own, "+
					"neither the same nor one inside the other; two would take each other's batches and files for their own",
					this.org, this.name, this.url, how, prev.org, prev.name, prev.url, prev.path)
				break
			}
			seen = append(seen, this)
		}
	}
}
