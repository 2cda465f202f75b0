package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller/config"
)

const secretContent = "password: s3cr3t-never-logged"

// writeSecret writes a file with exactly mode (the umask aside).
func writeSecret(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(secretContent), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// cloudsEnv isolates the clouds.yaml search: a working directory, a
// home and no OS_* variables of the machine running the test.
func cloudsEnv(t *testing.T) (cwd, home string) {
	t.Helper()
	cwd, home = t.TempDir(), t.TempDir()
	t.Chdir(cwd)
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("OS_CLIENT_CONFIG_FILE", "")
	t.Setenv("OS_CLOUD", "")
	return cwd, home
}

func TestWarnOpenSecretFiles(t *testing.T) {
	type file struct {
		rel  string // under the test's working directory, or "~/" for home
		mode os.FileMode
	}
	tests := []struct {
		name   string
		files  []file
		cloud  string // the config's cloud
		env    map[string]string
		tlsKey string
		want   []string // files warned about, with their mode: "path 0644"
	}{
		{name: "TLS key 0600 is quiet", files: []file{{"tls.key", 0o600}}, tlsKey: "tls.key"},
		{name: "TLS key 0640", files: []file{{"tls.key", 0o640}}, tlsKey: "tls.key", want: []string{"tls.key 0640"}},
		{name: "TLS key 0644", files: []file{{"tls.key", 0o644}}, tlsKey: "tls.key", want: []string{"tls.key 0644"}},
		{name: "TLS key missing is left to the server", tlsKey: "nope.key"},
		{name: "clouds.yaml in the working directory", cloud: "c",
			files: []file{{"clouds.yaml", 0o644}, {"~/.config/openstack/clouds.yaml", 0o644}},
			want:  []string{"clouds.yaml 0644"}},
		{name: "clouds.yaml 0600 and its secure.yaml 0640", cloud: "c",
			files: []file{{"clouds.yaml", 0o600}, {"secure.yaml", 0o640}},
			want:  []string{"secure.yaml 0640"}},
		{name: "clouds.yaml under ~/.config", cloud: "c",
			files: []file{{"~/.config/openstack/clouds.yaml", 0o640}, {"~/.config/openstack/secure.yaml", 0o600}},
			want:  []string{"~/.config/openstack/clouds.yaml 0640"}},
		{name: "XDG_CONFIG_HOME replaces ~/.config", cloud: "c", env: map[string]string{"XDG_CONFIG_HOME": "~/xdg"},
			files: []file{{"~/xdg/openstack/clouds.yaml", 0o644}, {"~/.config/openstack/clouds.yaml", 0o644}},
			want:  []string{"~/xdg/openstack/clouds.yaml 0644"}},
		{name: "OS_CLIENT_CONFIG_FILE is the only place looked at", cloud: "c",
			env:   map[string]string{"OS_CLIENT_CONFIG_FILE": "elsewhere/my-clouds.yaml"},
			files: []file{{"elsewhere/my-clouds.yaml", 0o644}, {"elsewhere/secure.yaml", 0o644}, {"clouds.yaml", 0o644}},
			want:  []string{"elsewhere/my-clouds.yaml 0644", "elsewhere/secure.yaml 0644"}},
		{name: "OS_CLOUD names the cloud", env: map[string]string{"OS_CLOUD": "c"},
			files: []file{{"clouds.yaml", 0o604}}, want: []string{"clouds.yaml 0604"}},
		{name: "no cloud named: the OS_* variables, no clouds.yaml read",
			files: []file{{"clouds.yaml", 0o644}}},
		{name: "TLS key and clouds.yaml", cloud: "c", tlsKey: "tls.key",
			files: []file{{"tls.key", 0o644}, {"clouds.yaml", 0o640}},
			want:  []string{"tls.key 0644", "clouds.yaml 0640"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cwd, home := cloudsEnv(t)
			abs := func(rel string) string {
				if r, ok := strings.CutPrefix(rel, "~/"); ok {
					return filepath.Join(home, r)
				}
				return filepath.Join(cwd, rel)
			}
			for k, v := range tt.env {
				if k != "OS_CLOUD" {
					v = abs(v)
				}
				t.Setenv(k, v)
			}
			for _, f := range tt.files {
				writeSecret(t, abs(f.rel), f.mode)
			}
			cfg := &config.Config{Cloud: tt.cloud}
			if tt.tlsKey != "" {
				cfg.Controller.TLSKeyFile = abs(tt.tlsKey)
			}

			core, logs := observer.New(zapcore.DebugLevel)
			warnOpenSecretFiles(zap.New(core), daemonSecretFiles(cfg))

			var got []string
			for _, e := range logs.All() {
				fields := e.ContextMap()
				path, _ := fields["file"].(string)
				if e.Level != zapcore.WarnLevel || !strings.Contains(e.Message, "chmod 600") ||
					fields["fix"] != "chmod 600 "+path || fields["holds"] == "" {
					t.Errorf("warning %q %v: want a Warn naming the file, what it holds and the chmod", e.Message, fields)
				}
				for _, s := range append([]string{e.Message}, fmtFields(fields)...) {
					if strings.Contains(s, "s3cr3t") {
						t.Errorf("warning shows the file's content: %q", s)
					}
				}
				got = append(got, path+" "+fields["mode"].(string))
			}
			var want []string
			for _, w := range tt.want {
				rel, mode, _ := strings.Cut(w, " ")
				want = append(want, abs(rel)+" "+mode)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("warned about\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func fmtFields(m map[string]any) []string {
	var out []string
	for k, v := range m {
		if s, ok := v.(string); ok {
			out = append(out, k+"="+s)
		}
	}
	return out
}
