package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong in a configuration file.
type Problem struct {
	// Path is the field path, e.g. groups[1].rollout.max_surge.
	Path    string
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
// all in one go.
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
	lines    map[string]int
}

func (d *decoder) problem(path string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if !isNull(n) {
		d.lines[path] = n.Line
	}
	if reflect.PointerTo(v.Type()).Implements(nodeDecoderType) {
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.problem(path, n.Line, "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(nodeDecoder).decodeNode(n); err != nil {
			d.problem(path, n.Line, "%v", err)
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
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.problem(path, n.Line, "expected a whole number, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			d.problem(path, n.Line, "expected a whole number, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.problem(path, n.Line, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

// scalar reads a plain value as text. Numbers are accepted as text (a
// flavor ID such as 42 is a string to Nova); mappings and lists are not.
func (d *decoder) scalar(n *yaml.Node, path, what string) (string, bool) {
	if isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.problem(path, n.Line, "expected %s, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.problem(path, n.Line, "expected a mapping of fields, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		at := join(path, name)
		if line, dup := seen[name]; dup {
			d.problem(at, key.Line, "field given twice (first on line %d)", line)
			continue
		}
		seen[name] = key.Line
		idx, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", name)
			if s := nearest(name, fields); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.problem(orRoot(path), key.Line, "%s", msg)
			continue
		}
		d.decode(val, v.Field(idx), at)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.problem(path, n.Line, "expected a list, got %s", describe(n))
		return
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
		d.problem(path, n.Line, "expected a mapping of names to values, got %s", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		at := join(path, key.Value)
		if line, dup := seen[key.Value]; dup {
			d.problem(at, key.Line, "key given twice (first on line %d)", line)
			continue
		}
		seen[key.Value] = key.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, at)
		m.SetMapIndex(reflect.ValueOf(key.Value), elem)
	}
	v.Set(m)
}

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

// nearest suggests the known field closest to a misspelt one.
func nearest(name string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, f := range names {
		if d := editDistance(name, f); d < bestDist {
			best, bestDist = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
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

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
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
	if n.ShortTag() == "!!int" || n.ShortTag() == "!!float" {
		return fmt.Errorf("expected a duration with a unit such as \"%ss\" or \"5m\", got the bare number %s", n.Value, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"30s\" or \"5m\", got %q", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("expected a duration of zero or more, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// decodeNode reads a whole number ("2") or a percentage ("25%").
func (v *IntOrPercent) decodeNode(n *yaml.Node) error {
	bad := fmt.Errorf("expected a whole number ≥ 0 or a percentage such as \"25%%\", got %q", n.Value)
	s := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(s, "%"); ok && n.ShortTag() == "!!str" {
		i, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || i < 0 {
			return bad
		}
		if i > 100 {
			return fmt.Errorf("expected a percentage from 0%% to 100%%, got %q", n.Value)
		}
		*v = IntOrPercent{Value: i, Percent: true, Set: true}
		return nil
	}
	if n.ShortTag() != "!!int" {
		return bad
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return bad
	}
	*v = IntOrPercent{Value: i, Set: true}
	return nil
}

// String writes the value back as it would be written in the file.
func (v IntOrPercent) String() string {
	if v.Percent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}
