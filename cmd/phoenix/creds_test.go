package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// clearOSEnv unsets every OS_* variable of the machine running the test
// and hides any clouds.yaml in its home, then sets env.
func clearOSEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			t.Setenv(k, "")
		}
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// openrcConfig is fleetConfig without `cloud:`: the OS_* variables say
// where to connect.
var openrcConfig = strings.Replace(fleetConfig, "cloud: phoenix-sim\n", "", 1)

// `source openrc && phoenix plan` works with a standard password openrc
// and with an application-credential one.
func TestPlanWithAnOpenrc(t *testing.T) {
	s, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.AddImage(sim.Image{Name: "gold"})
	ac := s.AddApplicationCredential("phoenix")
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(openrcConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]map[string]string{
		"standard openrc": {"OS_AUTH_URL": s.AuthURL(), "OS_USERNAME": "demo", "OS_PASSWORD": "demo-secret",
			"OS_PROJECT_NAME": "demo", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"},
		"application-credential openrc": {"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": s.AuthURL(),
			"OS_APPLICATION_CREDENTIAL_ID": ac.ID, "OS_APPLICATION_CREDENTIAL_SECRET": ac.Secret,
			"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOSEnv(t, env)
			out, code := run(t, "plan", "--config", cfg)
			if code != cli.ExitOK || !strings.Contains(out, "0 to replace, 0 to keep, 10 to create") {
				t.Fatalf("exit %d\n%s", code, out)
			}
		})
	}
}

// A wrong cloud name, a missing clouds.yaml and credentials Keystone
// refuses exit 2 at once from every verb that connects, saying what is
// wrong without the secret; the daemon does not try again.
func TestConnectConfigErrorsExit2(t *testing.T) {
	s, err := sim.New(sim.Options{Password: "s3cr3t-Pa55word"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	dir := t.TempDir()
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := s.WriteCloudsYAML(clouds, "phoenix-sim"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(key, []byte("webhook-s3cret-for-the-test-long-enough"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(cloud string) string {
		path := filepath.Join(t.TempDir(), "phoenix.yaml")
		body := strings.Replace(fleetConfig, "cloud: phoenix-sim\n",
			"cloud: "+cloud+"\ncontroller: {listen: \"127.0.0.1:0\", webhook_secret_file: "+key+"}\n", 1)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	verbs := [][]string{
		{"rebuild", "--all"}, {"plan"}, {"resume", "--group", "web"}, {"rollback", "--group", "web"},
		{"hold", "--group", "web", "--reason", "test"}, {"release", "--group", "web"},
		{"protect", "--server", "x", "--reason", "test"}, {"unprotect", "--server", "x"},
		// A retry would wait an hour and fail the test on its deadline.
		{"daemon", "--retry-wait-min", "1h", "--retry-wait-max", "1h"},
	}
	cases := []struct {
		name, cloud string
		env         map[string]string
		says        string
	}{
		{"a cloud name not in clouds.yaml", "phoenix-sm", map[string]string{"OS_CLIENT_CONFIG_FILE": clouds},
			`cloud "phoenix-sm" is not in ` + clouds + " (it has: phoenix-sim)"},
		{"no clouds.yaml", "phoenix-sim", map[string]string{"OS_CLIENT_CONFIG_FILE": clouds + ".gone"},
			`cloud "phoenix-sim": no clouds.yaml found (looked at ` + clouds + ".gone)"},
		{"a password Keystone refuses", "phoenix-sim", map[string]string{"OS_CLIENT_CONFIG_FILE": clouds, "OS_PASSWORD": "wrong-Pa55word"},
			"HTTP 401 from POST " + s.AuthURL() + "/auth/tokens"},
	}
	for _, tc := range cases {
		cfg := config(tc.cloud)
		for _, verb := range verbs {
			t.Run(tc.name+"/"+verb[0], func(t *testing.T) {
				clearOSEnv(t, tc.env)
				s.ResetRequests()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, code := cli.Run(ctx, newRootCommand(), append(verb, "--config", cfg)...)
				if code != cli.ExitUsage || !strings.Contains(out, "connect to the cloud: ") || !strings.Contains(out, tc.says) {
					t.Fatalf("exit %d, want %d saying %q:\n%s", code, cli.ExitUsage, tc.says, out)
				}
				for _, secret := range []string{"s3cr3t-Pa55word", "wrong-Pa55word"} {
					if strings.Contains(out, secret) {
						t.Errorf("a secret reached the output:\n%s", out)
					}
				}
				tokens := 0
				for _, r := range s.Requests() {
					if strings.HasSuffix(r.Path, "/auth/tokens") {
						tokens++
					}
				}
				if tokens > 1 {
					t.Errorf("%d token requests: refused credentials were sent again", tokens)
				}
			})
		}
	}
}
