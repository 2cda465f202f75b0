package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"go.yaml.in/yaml/v3"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
)

// TestEndToEndOpenrcPlanOnDevcloud turns the development cloud's clouds.yaml
// entry into the six variables of a standard openrc and runs `phoenix
// plan` with them alone, against the real Keystone; a wrong password
// then exits 2.
func TestEndToEndOpenrcPlanOnDevcloud(t *testing.T) {
	r := startOpenrcRun(t, "e2e-openrc")
	a := r.auth
	openrc := map[string]string{
		"OS_AUTH_URL": a.AuthURL, "OS_USERNAME": a.Username, "OS_PASSWORD": a.Password, "OS_PROJECT_NAME": a.ProjectName,
		"OS_USER_DOMAIN_NAME": a.UserDomainName, "OS_PROJECT_DOMAIN_NAME": a.ProjectDomainName,
	}
	out, code := r.plan(t, openrc)
	if code != cli.ExitOK || !strings.Contains(out, "0 to replace, 0 to keep, 1 to create") {
		t.Fatalf("plan with a standard openrc: exit %d\n%s", code, out)
	}

	openrc["OS_PASSWORD"] = "wrong-" + uuid.NewString()
	out, code = r.plan(t, openrc)
	if code != cli.ExitUsage || !strings.Contains(out, "HTTP 401") || strings.Contains(out, openrc["OS_PASSWORD"]) {
		t.Fatalf("plan with a wrong password: exit %d, want %d with Keystone's 401 and no password\n%s", code, cli.ExitUsage, out)
	}
}

// TestEndToEndAppCredOpenrcPlanOnDevcloud creates an application credential in
// the real Keystone, runs `phoenix plan` with an application-credential
// openrc (as Horizon writes one) and deletes the credential.
func TestEndToEndAppCredOpenrcPlanOnDevcloud(t *testing.T) {
	r := startOpenrcRun(t, "e2e-appcred")
	provider := devcloudProvider(t, r.ctx, r.cloudsFile)
	identity, err := gcopenstack.NewIdentityV3(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	user, err := tokens.Get(r.ctx, identity, provider.Token()).ExtractUser()
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour) // gone by itself should the deletion fail
	ac, err := applicationcredentials.Create(r.ctx, identity, user.ID, applicationcredentials.CreateOpts{
		Name: r.group, Description: "phoenix end-to-end test", ExpiresAt: &expires}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := applicationcredentials.Delete(context.Background(), identity, user.ID, ac.ID).ExtractErr(); err != nil {
			t.Errorf("delete application credential %s: %v", ac.ID, err)
		}
	})

	openrc := map[string]string{
		"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": r.auth.AuthURL,
		"OS_APPLICATION_CREDENTIAL_ID": ac.ID, "OS_APPLICATION_CREDENTIAL_SECRET": ac.Secret,
		"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3",
	}
	out, code := r.plan(t, openrc)
	if code != cli.ExitOK || !strings.Contains(out, "0 to replace, 0 to keep, 1 to create") {
		t.Fatalf("plan with an application-credential openrc: exit %d\n%s", code, out)
	}
	if strings.Contains(out, ac.Secret) {
		t.Errorf("the credential's secret reached the output:\n%s", out)
	}
}

// openrcRun is a plan of one group, on an image published for it, run
// by the phoenix binary with nothing but the variables given.
type openrcRun struct {
	*devcloudRun
	cfg  string
	auth *clouds.AuthInfo // the devcloud entry's
}

func startOpenrcRun(t *testing.T, prefix string) *openrcRun {
	t.Helper()
	r := startDevcloudRun(t, prefix)
	publishImage(t, r.ctx, r.glance, r.image)
	// No `cloud:`: the credentials are the environment's.
	cfg := r.config(t, "\n    count: 1\n")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b = bytes.Replace(b, []byte("cloud: devcloud\n"), nil, 1); bytes.Contains(b, []byte("cloud:")) {
		t.Fatalf("%s still names a cloud", cfg)
	}
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Clouds map[string]clouds.Cloud `yaml:"clouds"`
	}
	if b, err = os.ReadFile(r.cloudsFile); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &entry); err != nil {
		t.Fatal(err)
	}
	a := entry.Clouds["devcloud"].AuthInfo
	if a == nil || a.AuthURL == "" || a.Username == "" || a.ProjectName == "" {
		t.Fatalf("%s: the devcloud entry has no auth_url, username and project name", r.cloudsFile)
	}
	return &openrcRun{devcloudRun: r, cfg: cfg, auth: a}
}

// plan runs `phoenix plan` in an environment whose only OS_* variables
// are openrc, with no clouds.yaml to be found, and returns its output and
// exit code.
func (r *openrcRun) plan(t *testing.T, openrc map[string]string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(r.ctx, r.bin, "plan", "--config", r.cfg)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+t.TempDir())
	for k, v := range openrc {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%s", k, v))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}
