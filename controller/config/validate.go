package config

import (
	"fmt"
	"strings"
)

// validator checks a decoded configuration once its defaults are in,
// adding what it finds to the decoder's problems.
type validator struct {
	*decoder
	baseDir string
	// cloud is the top-level cloud, the one a location without a cloud
	// of its own is in.
	cloud string
}

// line returns the line of path, or of the nearest enclosing field the
// file mentions.
func (v *validator) line(path string) int {
	for p := path; ; {
		if line, ok := v.lines[p]; ok {
			return line
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return v.lines[""]
		}
		p = p[:i]
	}
}

// echoes reports whether a problem at path, judged from the values at
// deps, would only echo a value the decoder already refused: one at path
// or around it, or at or inside one of deps.
func (v *validator) echoes(path string, deps []string) bool {
	for f := range v.failed {
		if within(path, f) {
			return true
		}
		for _, dep := range deps {
			if within(dep, f) || within(f, dep) {
				return true
			}
		}
	}
	return false
}

// within reports whether path is inside (or is) the field outer.
func within(path, outer string) bool {
	if outer == "" {
		return true
	}
	rest, ok := strings.CutPrefix(path, outer)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// bad reports a problem with the value at path.
func (v *validator) bad(path, format string, args ...any) {
	v.badFrom(path, []string{path}, format, args...)
}

// badFrom reports a problem at path that is judged from the values at
// deps.
func (v *validator) badFrom(path string, deps []string, format string, args ...any) {
	if v.echoes(path, deps) {
		return
	}
	v.problem(path, v.line(path), format, args...)
}

func (v *validator) config(cfg *Config) {
	v.cloud = cfg.Cloud
	v.controller(&cfg.Controller)
	if len(cfg.Groups) == 0 {
		v.bad("groups", "expected at least one group")
		return
	}
	names := map[string]int{}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		if first, dup := names[g.Name]; dup && g.Name != "" {
			v.bad(path+".name", "group %q is defined twice (first as groups[%d], line %d)", g.Name, first, v.line(fmt.Sprintf("groups[%d].name", first)))
		} else {
			names[g.Name] = i
		}
		v.group(g, path)
	}
	v.stages(cfg.Groups)
}

// stages checks the groups that take what another group promotes: every
// image that passes keeps the tag, so a selector requiring it matches
// more than one image and must take the newest.
func (v *validator) stages(groups []Group) {
	by := map[string]int{}
	for i, g := range groups {
		if g.Promote != nil && g.Promote.Tag != "" {
			if _, dup := by[g.Promote.Tag]; !dup {
				by[g.Promote.Tag] = i
			}
		}
	}
	for i, g := range groups {
		for _, t := range g.Image.Tags {
			from, ok := by[t]
			if !ok || from == i || g.Image.Newest || g.Image.ID != "" {
				continue
			}
			path := fmt.Sprintf("groups[%d].image", i)
			v.badFrom(path+".newest", []string{path, path + ".tags"},
				"the selector requires %q, the tag group %s promotes, and every image that passes keeps it: set newest: true to take the newest of them", t, groups[from].Name)
			break
		}
	}
}

// distinct checks a list of names: none empty, none twice.
func (v *validator) distinct(list []string, path, expected, what string) {
	seen := map[string]int{}
	for i, s := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		if strings.TrimSpace(s) == "" {
			v.bad(at, "expected %s, got an empty one", expected)
			continue
		}
		if first, dup := seen[s]; dup {
			v.bad(at, "%s %q is listed twice (also %s[%d])", what, s, path, first)
			continue
		}
		seen[s] = i
	}
}

func (v *validator) port(p int, path string) {
	if p < 1 || p > 65535 {
		if !v.written[path] {
			v.bad(path, "a port from 1 to 65535 is required")
			return
		}
		v.bad(path, "expected a port from 1 to 65535, got %d", p)
	}
}
