package openstack_test

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// Each way of authenticating the openstack CLI knows, set up as an openrc
// would, connects to the simulator's Keystone and lists servers.
func TestOpenrcVariantsConnect(t *testing.T) {
	s, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	byID := s.AddApplicationCredential("phoenix-by-id")
	byName := s.AddApplicationCredential("phoenix-by-name")
	openrc := map[string]string{
		"OS_AUTH_URL": s.AuthURL(), "OS_USERNAME": "demo", "OS_PASSWORD": "demo-secret", "OS_PROJECT_NAME": "demo",
		"OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
	}
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"standard openrc", openrc},
		{"password by IDs", map[string]string{"OS_AUTH_URL": s.AuthURL(), "OS_USER_ID": s.UserID(), "OS_PASSWORD": "demo-secret",
			"OS_PROJECT_ID": s.ProjectID()}},
		{"domain IDs", map[string]string{"OS_AUTH_URL": s.AuthURL(), "OS_USERNAME": "demo", "OS_PASSWORD": "demo-secret",
			"OS_PROJECT_NAME": "demo", "OS_USER_DOMAIN_ID": s.DomainID(), "OS_PROJECT_DOMAIN_ID": s.DomainID(), "OS_REGION_NAME": "RegionOne",
			"OS_INTERFACE": "internal"}},
		{"token", map[string]string{"OS_AUTH_TYPE": "v3token", "OS_AUTH_URL": s.AuthURL(), "OS_TOKEN": simToken(t, s),
			"OS_PROJECT_NAME": "demo", "OS_PROJECT_DOMAIN_NAME": "Default"}},
		{"application credential by ID", map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": s.AuthURL(),
			"OS_APPLICATION_CREDENTIAL_ID": byID.ID, "OS_APPLICATION_CREDENTIAL_SECRET": byID.Secret,
			"OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3"}},
		{"application credential by name and user", map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": s.AuthURL(),
			"OS_APPLICATION_CREDENTIAL_NAME": byName.Name, "OS_APPLICATION_CREDENTIAL_SECRET": byName.Secret,
			"OS_USERNAME": "demo", "OS_USER_DOMAIN_NAME": "Default"}},
		{"application credential over a password openrc", merge(openrc, map[string]string{"OS_AUTH_TYPE": "v3applicationcredential",
			"OS_APPLICATION_CREDENTIAL_ID": byID.ID, "OS_APPLICATION_CREDENTIAL_SECRET": byID.Secret, "OS_PASSWORD": "stale"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			openstack.IsolateEnv(t, tc.env)
			c, err := openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.ListServers(ctx(t), "phoenix-group:web"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Variables set beside OS_CLOUD win over the clouds.yaml entry, as they
// do for the openstack CLI.
func TestVariablesBesideOSCloud(t *testing.T) {
	s, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	file := filepath.Join(t.TempDir(), "clouds.yaml")
	yaml := strings.Replace(string(s.CloudsYAML("mycloud")), `password: "demo-secret"`, `password: "wrong"`, 1)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	openstack.IsolateEnv(t, map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycloud"})
	if _, err := openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry}); !openstack.IsConfigError(err) {
		t.Fatalf("the entry's wrong password: %v, want a refusal", err)
	}
	t.Setenv("OS_PASSWORD", "demo-secret")
	if _, err := openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry}); err != nil {
		t.Fatalf("with OS_PASSWORD beside OS_CLOUD: %v", err)
	}
}

// What the operator got wrong is a ConfigError, said without a secret;
// a cloud that is down is not.
func TestConnectErrors(t *testing.T) {
	s, err := sim.New(sim.Options{Password: "s3cr3t-Pa55word"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ac := s.AddApplicationCredential("phoenix")
	file := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := s.WriteCloudsYAML(file, "mycloud"); err != nil {
		t.Fatal(err)
	}
	down := closedAddr(t)
	tests := []struct {
		name   string
		env    map[string]string
		config bool
		says   string
	}{
		{"wrong password", map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycloud", "OS_PASSWORD": "wrong-Pa55word"}, true,
			"HTTP 401 from POST " + s.AuthURL() + "/auth/tokens: The request you have made requires authentication"},
		{"wrong application credential secret", map[string]string{"OS_AUTH_URL": s.AuthURL(), "OS_AUTH_TYPE": "v3applicationcredential",
			"OS_APPLICATION_CREDENTIAL_ID": ac.ID, "OS_APPLICATION_CREDENTIAL_SECRET": "wrong-Pa55word"}, true, "HTTP 401"},
		{"project not found", map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycloud", "OS_PROJECT_NAME": "nope"}, true, "HTTP 401"},
		{"cloud not in clouds.yaml", map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycluod"}, true,
			`cloud "mycluod" is not in ` + file + " (it has: mycloud)"},
		{"no clouds.yaml", map[string]string{"OS_CLOUD": "mycloud"}, true, `cloud "mycloud": no clouds.yaml found (looked at `},
		{"missing clouds.yaml named", map[string]string{"OS_CLIENT_CONFIG_FILE": file + ".gone", "OS_CLOUD": "mycloud"}, true,
			"no clouds.yaml found (looked at " + file + ".gone)"},
		{"a region the cloud has not", map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycloud", "OS_REGION_NAME": "RegionTwo"}, true,
			`compute (Nova) endpoint in the catalog: No suitable endpoint could be found in the service catalog. (region "RegionTwo", interface public)`},
		{"Keystone down", map[string]string{"OS_CLIENT_CONFIG_FILE": file, "OS_CLOUD": "mycloud", "OS_AUTH_URL": "http://" + down + "/identity/v3"}, false,
			"authenticate with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			openstack.IsolateEnv(t, tc.env)
			_, err := openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
			if openstack.IsConfigError(err) != tc.config {
				t.Errorf("IsConfigError = %v, want %v: %v", !tc.config, tc.config, err)
			}
			for _, secret := range []string{"s3cr3t-Pa55word", "wrong-Pa55word", ac.Secret} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// OS_CACERT is what the connection trusts: Keystone behind a certificate
// of a private CA is reached with it and refused without it.
func TestCACertIsTrusted(t *testing.T) {
	keystone := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`))
	}))
	t.Cleanup(keystone.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemOf(keystone.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	openrc := map[string]string{"OS_AUTH_URL": keystone.URL + "/v3", "OS_USER_ID": "u", "OS_PASSWORD": "p", "OS_PROJECT_ID": "p"}

	openstack.IsolateEnv(t, openrc)
	_, err := openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without OS_CACERT: %v, want a certificate error", err)
	}
	t.Setenv("OS_CACERT", ca)
	_, err = openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry})
	if !openstack.IsConfigError(err) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("with OS_CACERT: %v, want Keystone's 401 over TLS", err)
	}
	t.Setenv("OS_CACERT", "")
	t.Setenv("OS_INSECURE", "true")
	_, err = openstack.New(ctx(t), openstack.Options{Retry: simtest.FastRetry})
	if !openstack.IsConfigError(err) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("with OS_INSECURE: %v, want Keystone's 401 over TLS", err)
	}
}

// simToken is a token of the simulator's user, as `openstack token issue`
// prints it.
func simToken(t *testing.T, s *sim.Sim) string {
	t.Helper()
	ao, _, _, err := clouds.Parse(clouds.WithCloudName("sim"), clouds.WithCloudsYAML(strings.NewReader(string(s.CloudsYAML("sim")))))
	if err != nil {
		t.Fatal(err)
	}
	p, err := config.NewProviderClient(ctx(t), ao)
	if err != nil {
		t.Fatal(err)
	}
	return p.Token()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
