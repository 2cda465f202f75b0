package openstack

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"go.yaml.in/yaml/v3"
)

// Credentials are read as the openstack CLI reads them. gophercloud's
// config/clouds reads a clouds.yaml entry (with secure.yaml, the TLS
// files, region and interface); it has no reader for the OS_* variables
// that does what the CLI does (AuthOptionsFromEnv wants OS_PROJECT_ID
// beside a project name, and knows no user or project domain), so the
// variables are mapped here onto clouds.yaml's auth keys, which they
// mirror, and laid over the entry: a variable set beside OS_CLOUD wins,
// as it does for the CLI.

// authVar is an OS_* variable and the clouds.yaml auth key it sets.
type authVar struct {
	env, key string
	field    func(*clouds.AuthInfo) *string
}

// authVars are the variables the CLI reads for password, token and
// application-credential auth. Where two set one key (OS_TENANT_NAME is
// the old OS_PROJECT_NAME; OS_USERID is gophercloud's OS_USER_ID), the
// first one set wins.
var authVars = []authVar{
	{"OS_AUTH_URL", "auth_url", func(a *clouds.AuthInfo) *string { return &a.AuthURL }},
	{"OS_USERNAME", "username", func(a *clouds.AuthInfo) *string { return &a.Username }},
	{"OS_USER_ID", "user_id", func(a *clouds.AuthInfo) *string { return &a.UserID }},
	{"OS_USERID", "user_id", func(a *clouds.AuthInfo) *string { return &a.UserID }},
	{"OS_PASSWORD", "password", func(a *clouds.AuthInfo) *string { return &a.Password }},
	{"OS_TOKEN", "token", func(a *clouds.AuthInfo) *string { return &a.Token }},
	{"OS_USER_DOMAIN_ID", "user_domain_id", func(a *clouds.AuthInfo) *string { return &a.UserDomainID }},
	{"OS_USER_DOMAIN_NAME", "user_domain_name", func(a *clouds.AuthInfo) *string { return &a.UserDomainName }},
	{"OS_PROJECT_ID", "project_id", func(a *clouds.AuthInfo) *string { return &a.ProjectID }},
	{"OS_TENANT_ID", "project_id", func(a *clouds.AuthInfo) *string { return &a.ProjectID }},
	{"OS_PROJECT_NAME", "project_name", func(a *clouds.AuthInfo) *string { return &a.ProjectName }},
	{"OS_TENANT_NAME", "project_name", func(a *clouds.AuthInfo) *string { return &a.ProjectName }},
	{"OS_PROJECT_DOMAIN_ID", "project_domain_id", func(a *clouds.AuthInfo) *string { return &a.ProjectDomainID }},
	{"OS_PROJECT_DOMAIN_NAME", "project_domain_name", func(a *clouds.AuthInfo) *string { return &a.ProjectDomainName }},
	{"OS_DOMAIN_ID", "domain_id", func(a *clouds.AuthInfo) *string { return &a.DomainID }},
	{"OS_DOMAIN_NAME", "domain_name", func(a *clouds.AuthInfo) *string { return &a.DomainName }},
	{"OS_APPLICATION_CREDENTIAL_ID", "application_credential_id", func(a *clouds.AuthInfo) *string { return &a.ApplicationCredentialID }},
	{"OS_APPLICATION_CREDENTIAL_NAME", "application_credential_name", func(a *clouds.AuthInfo) *string { return &a.ApplicationCredentialName }},
	{"OS_APPLICATION_CREDENTIAL_SECRET", "application_credential_secret", func(a *clouds.AuthInfo) *string { return &a.ApplicationCredentialSecret }},
	{"OS_SYSTEM_SCOPE", "system_scope", func(a *clouds.AuthInfo) *string { return &a.SystemScope }},
	{"OS_TRUST_ID", "trust_id", func(a *clouds.AuthInfo) *string { return &a.TrustID }},
}

// The auth types (OS_AUTH_TYPE, auth_type) Phoenix speaks, under the
// names keystoneauth gives them.
const (
	authPassword = "password"
	authToken    = "token"
	authAppCred  = "v3applicationcredential"
)

var authTypes = map[string]string{
	"password": authPassword, "v3password": authPassword,
	"token": authToken, "v3token": authToken,
	"v3applicationcredential": authAppCred,
}

// credentials are what a connection authenticates with, and where they
// came from, for messages.
type credentials struct {
	auth     gophercloud.AuthOptions
	endpoint gophercloud.EndpointOpts
	tls      *tls.Config
	source   string
}

// readCredentials reads the clouds.yaml entry named by opts.Cloud or
// OS_CLOUD with the OS_* variables laid over it, or the variables alone
// when no cloud is named. Every error it returns is a ConfigError.
func readCredentials(opts Options) (credentials, error) {
	c, err := readCredentialsFromEnv(opts)
	if err != nil {
		return c, &ConfigError{Err: err}
	}
	return c, nil
}

func readCredentialsFromEnv(opts Options) (credentials, error) {
	env, set := envAuth()
	authType := os.Getenv("OS_AUTH_TYPE")
	if authType != "" {
		set = append(set, "OS_AUTH_TYPE")
	}
	var parse []clouds.ParseOption
	if v := os.Getenv("OS_INSECURE"); v != "" {
		insecure, err := strconv.ParseBool(v)
		if err != nil {
			return credentials{}, fmt.Errorf("OS_INSECURE=%q: want true or false", v)
		}
		parse = append(parse, clouds.WithInsecure(insecure))
	}
	if v := os.Getenv("OS_INTERFACE"); v != "" && !slices.Contains([]string{"public", "publicURL", "internal", "internalURL", "admin", "adminURL"}, v) {
		return credentials{}, fmt.Errorf("OS_INTERFACE=%q: want public, internal or admin", v)
	}

	var c credentials
	var base clouds.AuthInfo
	name := cmp.Or(opts.Cloud, os.Getenv("OS_CLOUD"))
	if name != "" {
		file, err := findCloudsFile(opts.CloudsFile)
		if err != nil {
			return c, fmt.Errorf("cloud %q: %w", name, err)
		}
		ao, eo, tlsConfig, err := clouds.Parse(append(parse, clouds.WithCloudName(name), clouds.WithLocations(file))...)
		if err != nil {
			return c, explainParse(name, file, err)
		}
		base = authInfoOf(ao)
		c.endpoint, c.tls = eo, tlsConfig
		c.source = fmt.Sprintf("cloud %q of %s", name, file)
		if len(set) > 0 {
			c.source += " with " + strings.Join(set, ", ") + " from the environment"
		}
	} else {
		if len(set) == 0 {
			return c, errors.New("no cloud credentials: set `cloud:` in the config, OS_CLOUD, or the OS_* variables of an openrc (OS_AUTH_URL, ...)")
		}
		// An empty entry: Parse reads the region, interface and TLS
		// variables (OS_CACERT, OS_CERT, OS_KEY) for it.
		empty := strings.NewReader(`{"clouds": {"envvars": {"auth": {}}}}`)
		_, eo, tlsConfig, err := clouds.Parse(append(parse, clouds.WithCloudName("envvars"), clouds.WithCloudsYAML(empty))...)
		if err != nil {
			return c, fmt.Errorf("read the OS_* variables: %w", err)
		}
		c.endpoint, c.tls = eo, tlsConfig
		c.source = "the OS_* variables"
	}
	if opts.Region != "" {
		c.endpoint.Region = opts.Region
		c.source += fmt.Sprintf(" in region %q", opts.Region)
	}
	if c.tls != nil && c.tls.MinVersion == 0 {
		c.tls.MinVersion = tls.VersionTLS12
	}

	overlay(&base, env)
	ao, err := resolveAuth(base, authType)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.source, err)
	}
	c.auth = ao
	return c, nil
}

// envAuth reads the auth variables that are set, and their names.
func envAuth() (clouds.AuthInfo, []string) {
	var a clouds.AuthInfo
	var set []string
	for _, v := range authVars {
		val := os.Getenv(v.env)
		if val == "" {
			continue
		}
		set = append(set, v.env)
		if f := v.field(&a); *f == "" {
			*f = val
		}
	}
	return a, set
}

// overlay sets every key of top that is set on base.
func overlay(base *clouds.AuthInfo, top clouds.AuthInfo) {
	for _, v := range authVars {
		if val := *v.field(&top); val != "" {
			*v.field(base) = val
		}
	}
}

// authInfoOf turns what clouds.Parse made of an entry back into its auth
// keys, with the user's and the project's domains told apart, so that
// variables can be laid over them.
func authInfoOf(ao gophercloud.AuthOptions) clouds.AuthInfo {
	a := clouds.AuthInfo{
		AuthURL: ao.IdentityEndpoint, Username: ao.Username, UserID: ao.UserID, Password: ao.Password,
		Token: ao.TokenID, UserDomainID: ao.DomainID, UserDomainName: ao.DomainName,
		ApplicationCredentialID: ao.ApplicationCredentialID, ApplicationCredentialName: ao.ApplicationCredentialName,
		ApplicationCredentialSecret: ao.ApplicationCredentialSecret,
	}
	s := ao.Scope
	switch {
	case s == nil:
		a.ProjectID, a.ProjectName = ao.TenantID, ao.TenantName
	case s.TrustID != "":
		a.TrustID = s.TrustID
	case s.System:
		a.SystemScope = "all"
	case s.ProjectID != "":
		a.ProjectID = s.ProjectID
	case s.ProjectName != "":
		a.ProjectName, a.ProjectDomainID, a.ProjectDomainName = s.ProjectName, s.DomainID, s.DomainName
	default:
		a.DomainID, a.DomainName = s.DomainID, s.DomainName
	}
	return a
}

// resolveAuth builds gophercloud's options from auth keys the way
// keystoneauth does: the auth type decides which keys count (so a stale
// OS_PASSWORD does not spoil an application credential), an ID wins over
// a name, and a user's or project's own domain over domain_id/_name.
func resolveAuth(a clouds.AuthInfo, authType string) (gophercloud.AuthOptions, error) {
	kind := authTypes[authType]
	switch {
	case authType == "" && a.Password == "" && (a.ApplicationCredentialID != "" || a.ApplicationCredentialName != ""):
		kind = authAppCred
	case authType == "" && a.Password == "" && a.Token != "":
		kind = authToken
	case authType == "":
		kind = authPassword
	case kind == "":
		return gophercloud.AuthOptions{}, fmt.Errorf("auth type %q (OS_AUTH_TYPE, auth_type) is not one Phoenix speaks: use password, token or v3applicationcredential", authType)
	}
	ao := gophercloud.AuthOptions{IdentityEndpoint: a.AuthURL}
	if ao.IdentityEndpoint == "" {
		return ao, missing("auth URL", "auth_url")
	}
	switch kind {
	case authPassword:
		if a.Password == "" {
			return ao, missing("password", "password")
		}
		ao.Password = a.Password
		if err := setUser(&ao, a, "password auth"); err != nil {
			return ao, err
		}
	case authToken:
		if a.Token == "" {
			return ao, missing("token", "token")
		}
		ao.TokenID = a.Token
	case authAppCred:
		if a.ApplicationCredentialSecret == "" {
			return ao, missing("application credential secret", "application_credential_secret")
		}
		ao.ApplicationCredentialSecret = a.ApplicationCredentialSecret
		switch {
		case a.ApplicationCredentialID != "":
			ao.ApplicationCredentialID = a.ApplicationCredentialID
		case a.ApplicationCredentialName != "":
			ao.ApplicationCredentialName = a.ApplicationCredentialName
			if err := setUser(&ao, a, "an application credential by name"); err != nil {
				return ao, err
			}
		default:
			return ao, missing("application credential", "application_credential_id")
		}
		// Keystone scopes the token to the credential's own project and
		// refuses a scope asked for beside it.
		return ao, nil
	}
	scope, err := scopeOf(a)
	if err != nil {
		return ao, err
	}
	ao.Scope = scope
	return ao, nil
}

// setUser names the user by ID, or by name in its domain.
func setUser(ao *gophercloud.AuthOptions, a clouds.AuthInfo, needs string) error {
	switch {
	case a.UserID != "":
		ao.UserID = a.UserID
	case a.Username != "":
		ao.Username = a.Username
		ao.DomainID, ao.DomainName = domainOf(a.UserDomainID, a.UserDomainName, a.DomainID, a.DomainName)
		if ao.DomainID == "" && ao.DomainName == "" {
			return fmt.Errorf("user %q needs its domain: set OS_USER_DOMAIN_NAME or OS_USER_DOMAIN_ID (auth.user_domain_name or auth.user_domain_id in clouds.yaml)", a.Username)
		}
	default:
		return fmt.Errorf("%s needs a user: set OS_USERNAME or OS_USER_ID (auth.username or auth.user_id in clouds.yaml)", needs)
	}
	return nil
}

// scopeOf is the scope the token asks for: a trust, the system, a project
// by ID or by name in its domain, a domain, or none (Keystone then scopes
// to the user's default project, if it has one).
func scopeOf(a clouds.AuthInfo) (*gophercloud.AuthScope, error) {
	switch {
	case a.TrustID != "":
		return &gophercloud.AuthScope{TrustID: a.TrustID}, nil
	case a.SystemScope != "":
		if a.SystemScope != "all" {
			return nil, fmt.Errorf("system scope %q (OS_SYSTEM_SCOPE, auth.system_scope): only \"all\" exists", a.SystemScope)
		}
		return &gophercloud.AuthScope{System: true}, nil
	case a.ProjectID != "":
		return &gophercloud.AuthScope{ProjectID: a.ProjectID}, nil
	case a.ProjectName != "":
		id, name := domainOf(a.ProjectDomainID, a.ProjectDomainName, a.DomainID, a.DomainName)
		if id == "" && name == "" {
			return nil, fmt.Errorf("project %q needs its domain: set OS_PROJECT_DOMAIN_NAME or OS_PROJECT_DOMAIN_ID (auth.project_domain_name or auth.project_domain_id in clouds.yaml), or name the project by OS_PROJECT_ID", a.ProjectName)
		}
		return &gophercloud.AuthScope{ProjectName: a.ProjectName, DomainID: id, DomainName: name}, nil
	case a.DomainID != "" || a.DomainName != "":
		id, name := domainOf(a.DomainID, a.DomainName)
		return &gophercloud.AuthScope{DomainID: id, DomainName: name}, nil
	}
	return nil, nil
}

// domainOf picks one domain from candidates given as ID, name pairs, the
// first set winning: gophercloud refuses an ID and a name together.
func domainOf(pairs ...string) (id, name string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != "" {
			return pairs[i], ""
		}
		if pairs[i+1] != "" {
			return "", pairs[i+1]
		}
	}
	return "", ""
}

func missing(what, key string) error {
	return fmt.Errorf("no %s: set OS_%s (auth.%s in clouds.yaml)", what, strings.ToUpper(key), key)
}

// findCloudsFile is the clouds.yaml gophercloud (and the CLI) would read:
// explicit when given, else OS_CLIENT_CONFIG_FILE, else the first of
// ./clouds.yaml, ~/.config/openstack/clouds.yaml (XDG_CONFIG_HOME) and
// /etc/openstack/clouds.yaml that opens.
func findCloudsFile(explicit string) (string, error) {
	locs := []string{cmp.Or(explicit, os.Getenv("OS_CLIENT_CONFIG_FILE"))}
	if locs[0] == "" {
		locs = locs[:0]
		if cwd, err := os.Getwd(); err == nil {
			locs = append(locs, filepath.Join(cwd, "clouds.yaml"))
		}
		userConfig := os.Getenv("XDG_CONFIG_HOME")
		if home, err := os.UserHomeDir(); userConfig == "" && err == nil {
			userConfig = filepath.Join(home, ".config")
		}
		if userConfig != "" {
			locs = append(locs, filepath.Join(userConfig, "openstack", "clouds.yaml"))
		}
		locs = append(locs, "/etc/openstack/clouds.yaml")
	}
	for _, p := range locs {
		if f, err := os.Open(p); err == nil {
			_ = f.Close()
			return p, nil
		}
	}
	return "", fmt.Errorf("no clouds.yaml found (looked at %s); set OS_CLIENT_CONFIG_FILE to its path", strings.Join(locs, ", "))
}

// explainParse says what is wrong with a clouds.yaml gophercloud could
// not read the cloud from; a cloud that is not there is named with those
// that are.
func explainParse(name, file string, err error) error {
	if b, rerr := os.ReadFile(file); rerr == nil {
		var doc struct {
			Clouds map[string]yaml.Node `yaml:"clouds"`
		}
		if yaml.Unmarshal(b, &doc) == nil {
			if _, ok := doc.Clouds[name]; !ok {
				var names []string
				for n := range doc.Clouds {
					names = append(names, n)
				}
				slices.Sort(names)
				return fmt.Errorf("cloud %q is not in %s (it has: %s)", name, file, strings.Join(names, ", "))
			}
		}
	}
	return fmt.Errorf("read cloud %q from %s: %w", name, file, err)
}
