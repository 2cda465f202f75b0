// Package examples holds configuration samples that the phoenix binary
// accepts; a test loads each of them so they cannot drift from the code.
// The demo configuration is embedded for `phoenix demo`.
package examples

import _ "embed"

// Demo is demo.yaml: the fleet `phoenix demo` builds and rebuilds.
//
//go:embed demo.yaml
var Demo []byte
