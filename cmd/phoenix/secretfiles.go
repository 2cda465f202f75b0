package main

import (
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// secretFile is a file Phoenix (or gophercloud for it) reads a secret
// from, and what the secret is, for the warning.
type secretFile struct {
	path string
	what string // "controller.tls_key_file", "clouds.yaml", ...
}

// warnOpenSecretFiles logs a warning for each file that group or others
// may read (mode & 0o077 != 0), naming the file and its mode and saying
// how to fix it; it never reads a file's content. A file that does not
// exist is skipped: whoever opens it reports that. The webhook secrets are
// not listed here: trigger.ReadSecret warns about them as it reads them.
func warnOpenSecretFiles(log *zap.Logger, files []secretFile) {
	for _, f := range files {
		fi, err := os.Stat(f.path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			log.Warn("secret file is readable by group or others; chmod 600 it",
				zap.String("file", f.path), zap.String("holds", f.what),
				zap.String("mode", fmt.Sprintf("%04o", perm)),
				zap.String("fix", "chmod 600 "+f.path))
		}
	}
}

// daemonSecretFiles are the secret files the daemon reads at start,
// besides the webhook secrets: the TLS key, the broker's and the notify
// targets' URL files, and the clouds.yaml files in use.
func daemonSecretFiles(cfg *config.Config) []secretFile {
	var files []secretFile
	if cfg.Controller.TLSKeyFile != "" {
		files = append(files, secretFile{cfg.Controller.TLSKeyFile, "controller.tls_key_file"})
	}
	if a := cfg.Controller.Notifications.AMQP; a != nil {
		files = append(files, secretFile{a.URLFile, "controller.notifications.amqp.url_file"})
	}
	for i, t := range cfg.Controller.Notify {
		if t.URLFile != "" {
			files = append(files, secretFile{t.URLFile, fmt.Sprintf("controller.notify[%d].url_file", i)})
		}
	}
	return append(files, cloudsSecretFiles(cfg.Cloud)...)
}

// cloudsSecretFiles are the clouds.yaml and its secure.yaml that
// gophercloud's openstack/config/clouds loader reads for the cloud named
// by the configuration or OS_CLOUD; none when no cloud is named (the
// credentials come from the OS_* variables).
//
// The search follows clouds.Parse (gophercloud v2): OS_CLIENT_CONFIG_FILE
// alone when set; otherwise ./clouds.yaml, then
// ${XDG_CONFIG_HOME:-$HOME/.config}/openstack/clouds.yaml, then
// /etc/openstack/clouds.yaml. The first that opens is used, and
// secure.yaml is looked for in its directory only.
func cloudsSecretFiles(cloud string) []secretFile {
	if cloud == "" && os.Getenv("OS_CLOUD") == "" {
		return nil
	}
	clouds := firstOpenable(cloudsLocations())
	if clouds == "" {
		return nil
	}
	return []secretFile{
		{clouds, "clouds.yaml"},
		{filepath.Join(filepath.Dir(clouds), "secure.yaml"), "secure.yaml"},
	}
}

// cloudsLocations are the places gophercloud looks for clouds.yaml, in
// its order.
func cloudsLocations() []string {
	if p := os.Getenv("OS_CLIENT_CONFIG_FILE"); p != "" {
		return []string{p}
	}
	var locs []string
	if cwd, err := os.Getwd(); err == nil {
		locs = append(locs, filepath.Join(cwd, "clouds.yaml"))
	}
	userConfig := os.Getenv("XDG_CONFIG_HOME")
	if userConfig == "" {
		if home, err := os.UserHomeDir(); err == nil {
			userConfig = filepath.Join(home, ".config")
		}
	}
	if userConfig != "" {
		locs = append(locs, filepath.Join(userConfig, "openstack", "clouds.yaml"))
	}
	return append(locs, filepath.Join("/etc", "openstack", "clouds.yaml"))
}

// firstOpenable is the first path gophercloud's os.Open would succeed on.
// It opens only regular files: opening a FIFO would block. A path that
// exists but is not a regular file ends the search too, as gophercloud
// would pick it, with nothing to check.
func firstOpenable(paths []string) string {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !fi.Mode().IsRegular() {
			return ""
		}
		f, err := os.Open(p)
		if err != nil {
			continue // unreadable to us: gophercloud moves on too
		}
		_ = f.Close()
		return p
	}
	return ""
}
