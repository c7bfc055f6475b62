// Package configs holds the configuration files kata-deploy ships, for the programs that write
// them (the installer) or package them.
package configs

import _ "embed"

// PluginsUnit is the systemd unit of kata-plugins: `install --with-plugins` writes it with the
// install's paths in ExecStart; the packages ship it as it is.
//
//go:embed kata-plugins.service
var PluginsUnit []byte
