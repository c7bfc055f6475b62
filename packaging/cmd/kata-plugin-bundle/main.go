// Command kata-plugin-bundle writes kata-plugins as a Docker managed plugin bundle (`make
// plugin-bundle`): DIR/config.json and DIR/rootfs, for `docker plugin create NAME DIR`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kata-deploy/kata-deploy/packaging/pluginbundle"
)

func main() {
	var o pluginbundle.Options
	flag.StringVar(&o.Plugins, "plugins", "bin/static/kata-plugins", "a static kata-plugins (CGO_ENABLED=0)")
	flag.StringVar(&o.OutDir, "out", "dist/plugin-bundle", "the bundle directory (replaced)")
	flag.Parse()
	if err := pluginbundle.Build(o); err != nil {
		fmt.Fprintln(os.Stderr, "kata-plugin-bundle:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: docker plugin create kata-deploy/kata-block %s && docker plugin enable kata-deploy/kata-block\n", o.OutDir, o.OutDir)
}
