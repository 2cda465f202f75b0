package trigger

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	const key = "hunter2-0123456789abcdef0123456789abcdef"
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		secret  string
		warning string // substring; "" for none
		err     string // substring; "" for none
	}{
		{"plain", write("plain", key, 0o600), key, "", ""},
		{"trimmed", write("trimmed", "\n  hunter2 with inner space "+key+" \t\n", 0o400), "hunter2 with inner space " + key, "", ""},
		{"readable by others", write("open", key+"\n", 0o644), key, "readable by group or others (mode 0644)", ""},
		{"readable by group", write("group", key+"\n", 0o640), key, "mode 0640", ""},
		{"exactly the minimum", write("minimum", key[:MinSecret], 0o600), key[:MinSecret], "", ""},
		{"one byte short", write("short", key[:MinSecret-1]+"\n", 0o600), "", "", "31 bytes, expected at least 32"},
		{"three bytes", write("tiny", "hun\n", 0o600), "", "", "3 bytes, expected at least 32"},
		{"empty", write("empty", "", 0o600), "", "", "is empty"},
		{"only whitespace", write("blank", " \n\t\n", 0o600), "", "", "is empty"},
		{"missing", filepath.Join(dir, "missing"), "", "", "no such file"},
		{"directory", dir, "", "", "is a directory"},
		{"fifo", fifo, "", "", "not a regular file"},
		{"too large", write("large", strings.Repeat("k", maxSecretFile+1), 0o600), "", "", "larger than"},
	}
	if os.Geteuid() != 0 { // root reads anything
		tests = append(tests, struct {
			name, path, secret, warning, err string
		}{"unreadable", write("locked", "hunter2", 0o000), "", "", "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, warning, err := ReadSecret(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error containing %q", err, tt.err)
				}
				if !strings.Contains(err.Error(), tt.path) {
					t.Errorf("%q does not name the path", err)
				}
				if strings.Contains(err.Error(), "hun") || strings.Contains(err.Error(), "kkkk") {
					t.Errorf("%q shows the content", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(secret) != tt.secret {
				t.Errorf("secret %q, want %q", secret, tt.secret)
			}
			if tt.warning == "" && warning != "" || !strings.Contains(warning, tt.warning) {
				t.Errorf("warning %q, want %q", warning, tt.warning)
			}
			if strings.Contains(warning, "hunter2") {
				t.Errorf("warning %q shows the content", warning)
			}
		})
	}
}
