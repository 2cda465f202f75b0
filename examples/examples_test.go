package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/examples"
)

// TestEveryExampleLoads keeps the examples honest: each Phoenix
// configuration here must load exactly as the binary would load it.
func TestEveryExampleLoads(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, f := range files {
		if strings.HasPrefix(f, "clouds") || strings.HasSuffix(f, ".cloud-init.yaml") {
			continue
		}
		t.Run(f, func(t *testing.T) {
			cfg, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Groups) == 0 {
				t.Fatal("no groups")
			}
		})
		loaded++
	}
	if loaded < 2 {
		t.Fatalf("loaded %d example configurations, want at least demo.yaml and production.yaml", loaded)
	}
}

func TestEmbeddedDemoIsTheFile(t *testing.T) {
	onDisk, err := os.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(examples.Demo) {
		t.Fatal("examples.Demo differs from demo.yaml")
	}
}
