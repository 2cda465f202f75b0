package openstack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// isolateEnv clears every OS_* variable of the machine running the test
// and points the clouds.yaml search at an empty home, then sets env.
func isolateEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			t.Setenv(k, "")
		}
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	for k, v := range env {
		t.Setenv(k, v)
	}
}

const testCloudsYAML = `clouds:
  mycloud:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: alice
      password: file-Secret-1
      project_name: web
      user_domain_name: Users
      project_domain_name: Projects
    region_name: RegionOne
    interface: internal
  by-ids:
    auth:
      auth_url: https://keystone.example:5000/v3
      user_id: u-1
      password: file-Secret-1
      project_id: p-1
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: ac-1
      application_credential_secret: file-Secret-1
`

// The secrets every case uses: none may appear in an error.
var testSecrets = []string{"env-Secret-1", "file-Secret-1", "tok-Secret-1"}

func TestReadCredentials(t *testing.T) {
	openrc := map[string]string{
		"OS_AUTH_URL": "https://keystone.example:5000/v3", "OS_USERNAME": "bob", "OS_PASSWORD": "env-Secret-1",
		"OS_PROJECT_NAME": "web", "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	url := "https://keystone.example:5000/v3"
	tests := []struct {
		name   string
		cloud  string // Options.Cloud
		region string // Options.Region
		env    map[string]string
		want   gophercloud.AuthOptions
		eo     gophercloud.EndpointOpts
		err    string // a part of the error, when one is wanted
	}{
		{name: "standard openrc: password by names",
			env: openrc,
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainName: "Default"}},
			eo: gophercloud.EndpointOpts{Availability: gophercloud.AvailabilityPublic}},
		{name: "password by IDs",
			env: map[string]string{"OS_AUTH_URL": url, "OS_USER_ID": "u-1", "OS_PASSWORD": "env-Secret-1", "OS_PROJECT_ID": "p-1"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, UserID: "u-1", Password: "env-Secret-1",
				Scope: &gophercloud.AuthScope{ProjectID: "p-1"}}},
		{name: "domain IDs",
			env: with(openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_USER_DOMAIN_ID", "default", "OS_PROJECT_DOMAIN_ID", "pd"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainID: "default",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainID: "pd"}}},
		{name: "an ID beside a name: the ID wins, as in keystoneauth",
			env: with(openrc, "OS_USER_DOMAIN_ID", "default", "OS_PROJECT_ID", "p-1"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainID: "default",
				Scope: &gophercloud.AuthScope{ProjectID: "p-1"}}},
		{name: "OS_DOMAIN_NAME stands for both domains",
			env: with(openrc, "OS_USER_DOMAIN_NAME", "", "OS_PROJECT_DOMAIN_NAME", "", "OS_DOMAIN_NAME", "Corp"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainName: "Corp",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainName: "Corp"}}},
		{name: "OS_DOMAIN_ID alone scopes to the domain",
			env: map[string]string{"OS_AUTH_URL": url, "OS_USER_ID": "u-1", "OS_PASSWORD": "env-Secret-1", "OS_DOMAIN_ID": "d-1"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, UserID: "u-1", Password: "env-Secret-1",
				Scope: &gophercloud.AuthScope{DomainID: "d-1"}}},
		{name: "old OS_TENANT_NAME",
			env: with(openrc, "OS_PROJECT_NAME", "", "OS_TENANT_NAME", "legacy"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "legacy", DomainName: "Default"}}},
		{name: "system scope",
			env: map[string]string{"OS_AUTH_URL": url, "OS_USER_ID": "u-1", "OS_PASSWORD": "env-Secret-1", "OS_SYSTEM_SCOPE": "all"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, UserID: "u-1", Password: "env-Secret-1",
				Scope: &gophercloud.AuthScope{System: true}}},
		{name: "token",
			env: map[string]string{"OS_AUTH_TYPE": "v3token", "OS_AUTH_URL": url, "OS_TOKEN": "tok-Secret-1", "OS_PROJECT_ID": "p-1",
				"OS_USERNAME": "stale", "OS_USER_DOMAIN_NAME": "Default"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, TokenID: "tok-Secret-1", Scope: &gophercloud.AuthScope{ProjectID: "p-1"}}},
		{name: "token without OS_AUTH_TYPE",
			env:  map[string]string{"OS_AUTH_URL": url, "OS_TOKEN": "tok-Secret-1", "OS_PROJECT_ID": "p-1"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, TokenID: "tok-Secret-1", Scope: &gophercloud.AuthScope{ProjectID: "p-1"}}},
		{name: "application credential by ID, a password openrc's leftovers ignored",
			env: with(openrc, "OS_AUTH_TYPE", "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID", "ac-1",
				"OS_APPLICATION_CREDENTIAL_SECRET", "env-Secret-1"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "env-Secret-1"}},
		{name: "application credential by ID without OS_AUTH_TYPE",
			env: map[string]string{"OS_AUTH_URL": url, "OS_APPLICATION_CREDENTIAL_ID": "ac-1", "OS_APPLICATION_CREDENTIAL_SECRET": "env-Secret-1",
				"OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "internal"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "env-Secret-1"},
			eo:   gophercloud.EndpointOpts{Region: "RegionTwo", Availability: gophercloud.AvailabilityInternal}},
		{name: "application credential by name and user",
			env: map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": url, "OS_APPLICATION_CREDENTIAL_NAME": "phoenix",
				"OS_APPLICATION_CREDENTIAL_SECRET": "env-Secret-1", "OS_USERNAME": "bob", "OS_USER_DOMAIN_ID": "default"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialName: "phoenix", ApplicationCredentialSecret: "env-Secret-1",
				Username: "bob", DomainID: "default"}},
		{name: "application credential by name and user ID",
			env: map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": url, "OS_APPLICATION_CREDENTIAL_NAME": "phoenix",
				"OS_APPLICATION_CREDENTIAL_SECRET": "env-Secret-1", "OS_USER_ID": "u-1"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialName: "phoenix", ApplicationCredentialSecret: "env-Secret-1", UserID: "u-1"}},
		{name: "region and interface",
			env: with(openrc, "OS_REGION_NAME", "RegionTwo", "OS_INTERFACE", "admin"),
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "bob", Password: "env-Secret-1", DomainName: "Default",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainName: "Default"}},
			eo: gophercloud.EndpointOpts{Region: "RegionTwo", Availability: gophercloud.AvailabilityAdmin}},

		{name: "clouds.yaml entry",
			cloud: "mycloud",
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "alice", Password: "file-Secret-1", DomainName: "Users",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainName: "Projects"}},
			eo: gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityInternal}},
		{name: "a location's region replaces the entry's and OS_REGION_NAME",
			cloud: "mycloud", region: "RegionThree", env: map[string]string{"OS_REGION_NAME": "RegionTwo"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "alice", Password: "file-Secret-1", DomainName: "Users",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainName: "Projects"}},
			eo: gophercloud.EndpointOpts{Region: "RegionThree", Availability: gophercloud.AvailabilityInternal}},
		{name: "OS_CLOUD names the entry",
			env: map[string]string{"OS_CLOUD": "by-ids"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, UserID: "u-1", Password: "file-Secret-1",
				Scope: &gophercloud.AuthScope{ProjectID: "p-1"}}},
		{name: "clouds.yaml application credential",
			cloud: "appcred",
			want:  gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialID: "ac-1", ApplicationCredentialSecret: "file-Secret-1"}},
		{name: "variables beside OS_CLOUD win, as for the CLI",
			env: map[string]string{"OS_CLOUD": "mycloud", "OS_PASSWORD": "env-Secret-1", "OS_PROJECT_DOMAIN_ID": "pd",
				"OS_REGION_NAME": "RegionTwo", "OS_INTERFACE": "public"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, Username: "alice", Password: "env-Secret-1", DomainName: "Users",
				Scope: &gophercloud.AuthScope{ProjectName: "web", DomainID: "pd"}},
			eo: gophercloud.EndpointOpts{Region: "RegionTwo", Availability: gophercloud.AvailabilityPublic}},
		{name: "an application credential beside OS_CLOUD",
			env: map[string]string{"OS_CLOUD": "mycloud", "OS_AUTH_TYPE": "v3applicationcredential",
				"OS_APPLICATION_CREDENTIAL_ID": "ac-2", "OS_APPLICATION_CREDENTIAL_SECRET": "env-Secret-1"},
			want: gophercloud.AuthOptions{IdentityEndpoint: url, ApplicationCredentialID: "ac-2", ApplicationCredentialSecret: "env-Secret-1"},
			eo:   gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityInternal}},

		{name: "nothing set", err: "no cloud credentials: set `cloud:` in the config, OS_CLOUD, or the OS_* variables"},
		{name: "no auth URL", env: with(openrc, "OS_AUTH_URL", ""), err: "no auth URL: set OS_AUTH_URL (auth.auth_url in clouds.yaml)"},
		{name: "no password", env: with(openrc, "OS_PASSWORD", ""), err: "no password: set OS_PASSWORD"},
		{name: "no user", env: with(openrc, "OS_USERNAME", ""), err: "password auth needs a user: set OS_USERNAME or OS_USER_ID"},
		{name: "no user domain", env: with(openrc, "OS_USER_DOMAIN_NAME", ""),
			err: `user "bob" needs its domain: set OS_USER_DOMAIN_NAME or OS_USER_DOMAIN_ID`},
		{name: "no project domain", env: with(openrc, "OS_PROJECT_DOMAIN_NAME", ""),
			err: `project "web" needs its domain: set OS_PROJECT_DOMAIN_NAME or OS_PROJECT_DOMAIN_ID`},
		{name: "application credential without its secret",
			env: map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": url, "OS_APPLICATION_CREDENTIAL_ID": "ac-1", "OS_PASSWORD": "env-Secret-1"},
			err: "no application credential secret: set OS_APPLICATION_CREDENTIAL_SECRET"},
		{name: "application credential by name without a user",
			env: map[string]string{"OS_AUTH_TYPE": "v3applicationcredential", "OS_AUTH_URL": url, "OS_APPLICATION_CREDENTIAL_NAME": "phoenix",
				"OS_APPLICATION_CREDENTIAL_SECRET": "env-Secret-1"},
			err: "an application credential by name needs a user: set OS_USERNAME or OS_USER_ID"},
		{name: "an auth type Phoenix does not speak", env: with(openrc, "OS_AUTH_TYPE", "v3oidcpassword"),
			err: `auth type "v3oidcpassword" (OS_AUTH_TYPE, auth_type) is not one Phoenix speaks`},
		{name: "a system scope that does not exist", env: with(openrc, "OS_SYSTEM_SCOPE", "some"), err: `system scope "some"`},
		{name: "OS_INSECURE that is no boolean", env: with(openrc, "OS_INSECURE", "maybe"), err: `OS_INSECURE="maybe": want true or false`},
		{name: "OS_INTERFACE that is none", env: with(openrc, "OS_INTERFACE", "internl"), err: `OS_INTERFACE="internl": want public, internal or admin`},
		{name: "OS_CACERT that does not exist", env: with(openrc, "OS_CACERT", "/nonexistent/ca.pem"), err: "/nonexistent/ca.pem"},
		{name: "a cloud name that is not in clouds.yaml", cloud: "mycluod",
			err: `cloud "mycluod" is not in CLOUDS (it has: appcred, by-ids, mycloud)`},
		{name: "a clouds.yaml entry missing what the variables do not give", env: map[string]string{"OS_CLOUD": "appcred", "OS_AUTH_TYPE": "password"},
			err: `cloud "appcred" of CLOUDS with OS_AUTH_TYPE`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t, tc.env)
			file := filepath.Join(t.TempDir(), "clouds.yaml")
			if err := os.WriteFile(file, []byte(testCloudsYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := readCredentials(Options{Cloud: tc.cloud, Region: tc.region, CloudsFile: file})
			if tc.err != "" {
				want := strings.ReplaceAll(tc.err, "CLOUDS", file)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want one saying %q", err, want)
				}
				if !IsConfigError(err) {
					t.Errorf("%v is no ConfigError", err)
				}
				for _, s := range testSecrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.auth, tc.want) {
				t.Errorf("auth options\n got %+v scope %+v\nwant %+v scope %+v", c.auth, c.auth.Scope, tc.want, tc.want.Scope)
			}
			eo := tc.eo
			if reflect.DeepEqual(eo, gophercloud.EndpointOpts{}) {
				eo.Availability = gophercloud.AvailabilityPublic
				if tc.cloud == "mycloud" {
					eo = gophercloud.EndpointOpts{Region: "RegionOne", Availability: gophercloud.AvailabilityInternal}
				}
			}
			if !reflect.DeepEqual(c.endpoint, eo) {
				t.Errorf("endpoint options %+v, want %+v", c.endpoint, eo)
			}
		})
	}
}

// A clouds.yaml entry read back from what gophercloud made of it gives
// the same options: laying no variable over an entry changes nothing.
func TestCloudsEntryRoundTrip(t *testing.T) {
	entries := map[string]string{
		"names":           "username: u\n      password: p\n      user_domain_name: ud\n      project_name: pr\n      project_domain_name: pd",
		"ids":             "user_id: u\n      password: p\n      project_id: pr",
		"domain fallback": "username: u\n      password: p\n      domain_name: d\n      project_name: pr",
		"domain scope":    "user_id: u\n      password: p\n      domain_id: d",
		"system scope":    "user_id: u\n      password: p\n      system_scope: all",
		"trust":           "user_id: u\n      password: p\n      trust_id: tr",
		"token":           "token: t\n      project_id: pr",
		"appcred by id":   "application_credential_id: a\n      application_credential_secret: s",
		"appcred by name": "application_credential_name: a\n      application_credential_secret: s\n      user_id: u",
	}
	for name, auth := range entries {
		t.Run(name, func(t *testing.T) {
			isolateEnv(t, nil)
			file := filepath.Join(t.TempDir(), "clouds.yaml")
			yaml := "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      " + auth + "\n"
			if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := readCredentials(Options{Cloud: "c", CloudsFile: file})
			if err != nil {
				t.Fatal(err)
			}
			again, err := resolveAuth(authInfoOf(c.auth), "")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, c.auth) {
				t.Errorf("read back\n got %+v scope %+v\nwant %+v scope %+v", again, again.Scope, c.auth, c.auth.Scope)
			}
		})
	}
}

func TestTLSVariables(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for p, b := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openrc := map[string]string{"OS_AUTH_URL": "https://k/v3", "OS_USER_ID": "u", "OS_PASSWORD": "env-Secret-1", "OS_PROJECT_ID": "p"}
	tests := []struct {
		name                    string
		env                     map[string]string
		roots, client, insecure bool
		err                     string
	}{
		{name: "none", env: map[string]string{}},
		{name: "CA", env: map[string]string{"OS_CACERT": ca}, roots: true},
		{name: "client certificate", env: map[string]string{"OS_CERT": cert, "OS_KEY": key}, client: true},
		{name: "insecure", env: map[string]string{"OS_INSECURE": "true"}, insecure: true},
		{name: "insecure false", env: map[string]string{"OS_INSECURE": "False"}},
		{name: "all", env: map[string]string{"OS_CACERT": ca, "OS_CERT": cert, "OS_KEY": key, "OS_INSECURE": "1"}, roots: true, client: true, insecure: true},
		{name: "certificate without key", env: map[string]string{"OS_CERT": cert}, err: "client cert is set, but client cert key is missing"},
		{name: "a CA file with no certificate", env: map[string]string{"OS_CACERT": key}, err: "failed to parse the CA Cert"},
	}
	for _, tc := range tests {
		for _, named := range []bool{false, true} {
			name := tc.name + " (OS_* variables)"
			if named {
				name = tc.name + " (beside OS_CLOUD)"
			}
			t.Run(name, func(t *testing.T) {
				env := map[string]string{}
				for k, v := range tc.env {
					env[k] = v
				}
				opts := Options{}
				if named {
					opts.CloudsFile = filepath.Join(t.TempDir(), "clouds.yaml")
					if err := os.WriteFile(opts.CloudsFile, []byte(testCloudsYAML), 0o600); err != nil {
						t.Fatal(err)
					}
					env["OS_CLOUD"] = "mycloud"
				} else {
					for k, v := range openrc {
						env[k] = v
					}
				}
				isolateEnv(t, env)
				c, err := readCredentials(opts)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) || !IsConfigError(err) {
						t.Fatalf("error %v, want a ConfigError saying %q", err, tc.err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := c.tls.RootCAs != nil; got != tc.roots {
					t.Errorf("own CA pool: %v, want %v", got, tc.roots)
				}
				if got := len(c.tls.Certificates) == 1; got != tc.client {
					t.Errorf("client certificate: %v, want %v", got, tc.client)
				}
				if c.tls.InsecureSkipVerify != tc.insecure {
					t.Errorf("insecure: %v, want %v", c.tls.InsecureSkipVerify, tc.insecure)
				}
			})
		}
	}
}

// selfSigned makes a certificate for 127.0.0.1 and its key, as PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phoenix test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
