package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Message: fmt.Sprintf("cannot read the file: %v", unwrapPath(err))}}}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse reads a configuration from data. name is what messages call the
// file, and becomes Config.Path; baseDir resolves relative user_data_file
// paths. A configuration that is not accepted returns a *Error listing
// every problem found.
func Parse(name string, data []byte, baseDir string) (*Config, error) {
	fail := func(p ...Problem) (*Config, error) { return nil, &Error{File: name, Problems: p} }
	const empty = "the file has no settings: expected a mapping with `groups:` at the top level"

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(Problem{Message: "the file is empty: expected a mapping with `groups:` at the top level"})
		}
		return fail(syntaxProblem(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fail(Problem{Line: extra.Line, Message: "a second YAML document (after ---): expected exactly one"})
	} else if !errors.Is(err, io.EOF) {
		return fail(syntaxProblem(err))
	}
	// Decode gives a document node holding the one root node (a null for
	// an empty document such as "---"); the root cannot be an alias, as
	// no anchor precedes it.
	doc := root.Content[0]
	if isNull(doc) {
		return fail(Problem{Message: empty})
	}

	cfg := &Config{Path: name}
	d := newDecoder()
	d.lines[""] = doc.Line
	d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
	if !d.tooMuch {
		applyDefaults(cfg, d.written)
		v := validator{decoder: d, baseDir: baseDir}
		v.config(cfg)
	}
	if len(d.problems) > 0 {
		// Top to bottom, as the operator reads the file.
		sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
		return fail(d.problems...)
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxProblem turns a YAML parser error into a problem with its line.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Message: "not valid YAML: " + m[2]}
	}
	return Problem{Message: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// unwrapPath drops the path from an *fs.PathError, which the message
// names already.
func unwrapPath(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}
