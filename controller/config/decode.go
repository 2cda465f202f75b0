package config

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong in a configuration file.
type Problem struct {
	// Path is the field path, e.g. groups[1].rollout.max_surge; empty for
	// a problem of the whole file.
	Path string
	// Line is the 1-based line in the file, 0 when unknown.
	Line    int
	Message string
}

func (p Problem) String() string {
	switch {
	case p.Path == "" && p.Line == 0:
		return p.Message
	case p.Path == "":
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	case p.Line == 0:
		return fmt.Sprintf("%s: %s", p.Path, p.Message)
	}
	return fmt.Sprintf("%s (line %d): %s", p.Path, p.Line, p.Message)
}

// Error lists every problem found in one file, so an operator fixes them
// all in one go. Its text is one line per problem, each starting with the
// file name.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.File + ": " + p.String()
	}
	return strings.Join(lines, "\n")
}

// nodeDecoder is implemented by field types that read themselves from a
// YAML scalar and explain what they expected when they cannot.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// decoder walks a YAML node tree alongside the Go types, so that every
// problem can name its field path and line, and unknown fields are caught
// where they stand.
type decoder struct {
	problems []Problem
	// lines holds the line of every field path the file mentions.
	lines map[string]int
	// written holds the field paths the file gives a (non-null) value.
	written map[string]bool
	// failed holds the field paths whose value could not be decoded; the
	// validator stays quiet about them rather than repeat the problem.
	failed map[string]bool
	// work counts nodes visited, so that aliases and merges cannot make a
	// small file expand without bound.
	work    int
	tooMuch bool
}

// maxWork bounds the nodes one file may expand to through aliases and
// merges: far above any real configuration.
const maxWork = 1_000_000

// spend counts n units of work and reports whether the budget is left.
func (d *decoder) spend(n int, line int) bool {
	d.work += n
	if d.work <= maxWork {
		return true
	}
	if !d.tooMuch {
		d.tooMuch = true
		d.problem("", line, "the file expands to more than %d values through aliases and merges", maxWork)
	}
	return false
}

func newDecoder() *decoder {
	return &decoder{lines: map[string]int{}, written: map[string]bool{}, failed: map[string]bool{}}
}

func (d *decoder) problem(path string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// fail reports a value that could not be decoded.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.failed[path] = true
	d.problem(orRoot(path), line, format, args...)
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

// shorthand is implemented by mapping types that may also be written as
// one value, such as a notify target written as its bare URL.
type shorthand interface {
	decodeShorthand(n *yaml.Node)
}

var shorthandType = reflect.TypeFor[shorthand]()

// listShorthand is implemented by mapping types that may also be written
// as the bare list of one of their fields, such as a placement written as
// its locations. The list is read as that field, under that field's path,
// so messages and defaults are the same for both forms.
type listShorthand interface {
	listField() string
}

var listShorthandType = reflect.TypeFor[listShorthand]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if !d.spend(1, n.Line) {
		return
	}
	if !isNull(n) {
		d.written[path] = true
		if _, ok := d.lines[path]; !ok {
			d.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && !isNull(n) && reflect.PointerTo(v.Type()).Implements(shorthandType) {
		v.Addr().Interface().(shorthand).decodeShorthand(n)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(listShorthandType) {
		name := v.Addr().Interface().(listShorthand).listField()
		switch {
		case n.Kind == yaml.SequenceNode:
			at := join(path, name)
			d.lines[at] = n.Line
			d.decode(n, v.Field(yamlFields(v.Type())[name]), at)
			return
		case n.Kind == yaml.ScalarNode && !isNull(n):
			d.fail(path, n.Line, "expected a list of %s, or a mapping of fields with %s, got %s", name, name, describe(n))
			return
		}
	}
	if reflect.PointerTo(v.Type()).Implements(nodeDecoderType) {
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n.Line, "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(nodeDecoder).decodeNode(n); err != nil {
			d.fail(path, n.Line, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n.Line, "expected a string, got %s", kindName(n))
			return
		}
		// Numbers are accepted as text: a flavor ID such as 42 is a string
		// to Nova.
		v.SetString(n.Value)
	case reflect.Int:
		if isNull(n) {
			return
		}
		i, ok := wholeNumber(n)
		if !ok {
			d.fail(path, n.Line, "expected a whole number, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(path, n.Line, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.fail(path, n.Line, "expected a mapping with `groups:` at the top level, got %s", describe(n))
			return
		}
		d.fail(path, n.Line, "expected a mapping of fields, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	for _, p := range d.pairs(n, path, "field", nil) {
		name := p.key.Value
		if path == "" && strings.HasPrefix(name, extensionPrefix) {
			continue // a place for anchors, e.g. x-defaults: &defaults
		}
		idx, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := nearest(name, fields); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += fmt.Sprintf("; expected one of %s", strings.Join(sortedKeys(fields), ", "))
			}
			d.problem(orRoot(path), p.key.Line, "%s", msg)
			continue
		}
		at := join(path, name)
		d.lines[at] = p.key.Line
		d.decode(p.val, v.Field(idx), at)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "expected a list, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		return // an empty list is the same as none
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping of names to values, got %s", describe(n))
		return
	}
	pairs := d.pairs(n, path, "key", nil)
	if len(pairs) == 0 {
		return // an empty mapping is the same as none
	}
	m := reflect.MakeMapWithSize(v.Type(), len(pairs))
	for _, p := range pairs {
		at := join(path, p.key.Value)
		if p.key.Kind != yaml.ScalarNode {
			d.fail(at, p.key.Line, "expected a name as the key, got %s", kindName(p.key))
			continue
		}
		d.lines[at] = p.key.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p.val, elem, at)
		m.SetMapIndex(reflect.ValueOf(p.key.Value), elem)
	}
	v.Set(m)
}

type pair struct{ key, val *yaml.Node }

// pairs returns the entries of a mapping with YAML merge keys
// (<<: *defaults) expanded: keys written in the mapping win over merged
// ones, and of several merged mappings the first wins. A key written twice
// in one mapping is a problem. what names the keys in messages.
func (d *decoder) pairs(n *yaml.Node, path, what string, merging []*yaml.Node) []pair {
	if slices.Contains(merging, n) {
		d.problem(orRoot(path), n.Line, "a merge (<<) includes the mapping it is part of")
		return nil
	}
	merging = append(merging, n)
	if !d.spend(len(n.Content)/2, n.Line) {
		return nil
	}
	var out, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if isMerge(key) {
			merged = append(merged, d.merge(val, path, what, merging)...)
			continue
		}
		if line, dup := seen[key.Value]; dup {
			d.problem(join(path, key.Value), key.Line, "%s given twice (first on line %d)", what, line)
			continue
		}
		seen[key.Value] = key.Line
		out = append(out, pair{key, val})
	}
	for _, p := range merged {
		if _, ok := seen[p.key.Value]; !ok {
			seen[p.key.Value] = p.key.Line
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) merge(val *yaml.Node, path, what string, merging []*yaml.Node) []pair {
	val = resolve(val)
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path, what, merging)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range val.Content {
			if item = resolve(item); item.Kind != yaml.MappingNode {
				d.problem(orRoot(path), item.Line, "expected a merge (<<) of mappings, got %s in the list", describe(item))
				continue
			}
			out = append(out, d.pairs(item, path, what, merging)...)
		}
		return out
	}
	d.problem(orRoot(path), val.Line, "expected a merge (<<) of a mapping or a list of mappings, got %s", describe(val))
	return nil
}

// extensionPrefix marks top-level keys that Phoenix ignores, to hold YAML
// anchors shared by several groups.
const extensionPrefix = "x-"

// yamlFields maps each yaml name of a struct to its field index.
func yamlFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = i
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nearest suggests the known field closest to a misspelt one: at most one
// edit in three characters away, so that a short unrelated word is not
// mistaken for a typo.
func nearest(name string, fields map[string]int) string {
	best, bestDist := "", max(1, len(name)/3)+1
	for _, f := range sortedKeys(fields) {
		if d := editDistance(strings.ToLower(name), f); d < bestDist {
			best, bestDist = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a typo of a field name anyway
	}
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// resolve follows an alias (*name) to the node it refers to.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" || n.Kind == yaml.AliasNode
}

func isMerge(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge"
}

var (
	decimal    = regexp.MustCompile(`^[+-]?[0-9]+$`)
	bareNumber = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$`)
)

// wholeNumber reads a YAML integer, or a string of decimal digits such as
// "8080" (so quoting a number is not an error).
func wholeNumber(n *yaml.Node) (int, bool) {
	if n.Kind != yaml.ScalarNode {
		return 0, false
	}
	s := strings.TrimSpace(n.Value)
	switch n.ShortTag() {
	case "!!int":
		var i int
		return i, n.Decode(&i) == nil
	case "!!str":
		if decimal.MatchString(s) {
			i, err := strconv.ParseInt(s, 10, strconv.IntSize)
			return int(i), err == nil
		}
	}
	return 0, false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a value"
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return kindName(n)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// decodeNode reads a Go duration such as "30s" or "1m30s".
func (d *Duration) decodeNode(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if bareNumber.MatchString(s) {
		return fmt.Errorf("expected a duration with a unit such as \"%ss\" or \"5m\", got the bare number %s", s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"30s\", \"1m30s\" or \"500ms\", got %q", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("expected a duration of zero or more, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML lets a Duration be decoded by yaml.Unmarshal too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n = resolve(n); n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration, got %s", n.Line, kindName(n))
	}
	if isNull(n) {
		return nil
	}
	return d.decodeNode(n)
}

// MarshalYAML writes the duration the way it is read ("1m30s").
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String returns the duration in Go syntax, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// decodeNode reads a whole number ("2") or a percentage ("25%").
func (v *IntOrPercent) decodeNode(n *yaml.Node) error {
	bad := fmt.Errorf("expected a whole number ≥ 0 or a percentage such as \"25%%\", got %q", n.Value)
	s := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(s, "%"); ok && n.ShortTag() == "!!str" {
		p = strings.TrimSpace(p)
		if !decimal.MatchString(p) {
			return bad
		}
		i, err := strconv.Atoi(p)
		if err != nil || i < 0 {
			return bad
		}
		if i > 100 {
			return fmt.Errorf("expected a percentage from 0%% to 100%%, got %q", n.Value)
		}
		*v = IntOrPercent{Value: i, Percent: true, Set: true}
		return nil
	}
	i, ok := wholeNumber(n)
	if !ok || i < 0 {
		return bad
	}
	*v = IntOrPercent{Value: i, Set: true}
	return nil
}

// UnmarshalYAML lets an IntOrPercent be decoded by yaml.Unmarshal too.
func (v *IntOrPercent) UnmarshalYAML(n *yaml.Node) error {
	if n = resolve(n); n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a whole number or a percentage, got %s", n.Line, kindName(n))
	}
	if isNull(n) {
		return nil
	}
	return v.decodeNode(n)
}

// MarshalYAML writes the value the way it is read: 2 or "25%".
func (v IntOrPercent) MarshalYAML() (any, error) {
	if v.Percent {
		return v.String(), nil
	}
	return v.Value, nil
}

// String writes the value back as it would be written in the file.
func (v IntOrPercent) String() string {
	if v.Percent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}

// MarshalYAML leaves out the probe settings of a group without a check,
// which the loader would refuse as having no effect.
func (h Health) MarshalYAML() (any, error) {
	type plain Health
	if h.HTTP == nil && h.TCP == nil {
		return map[string]any{}, nil
	}
	return plain(h), nil
}

// listField makes a placement written as a bare list its locations.
func (*Placement) listField() string { return "locations" }

// UnmarshalYAML lets a Placement be decoded by yaml.Unmarshal too: the
// bare list of its locations, or a mapping of failover_after and
// locations.
func (p *Placement) UnmarshalYAML(n *yaml.Node) error {
	type plain Placement
	if n = resolve(n); n.Kind == yaml.SequenceNode {
		return n.Decode(&p.Locations)
	}
	return n.Decode((*plain)(p))
}

// decodeShorthand reads a notify target written as its bare URL.
func (t *NotifyTarget) decodeShorthand(n *yaml.Node) { t.URL = n.Value }

// UnmarshalYAML lets a NotifyTarget be decoded by yaml.Unmarshal too: a
// bare URL, or a mapping of url or url_file.
func (t *NotifyTarget) UnmarshalYAML(n *yaml.Node) error {
	if n = resolve(n); n.Kind == yaml.ScalarNode {
		if !isNull(n) {
			t.decodeShorthand(n)
		}
		return nil
	}
	type plain NotifyTarget
	return n.Decode((*plain)(t))
}
