package distro

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// Text such as <prefix> survives into the man page (Markdown would take it for an HTML tag), and
// hidden commands get no page.
func TestManPages(t *testing.T) {
	root := &cobra.Command{Use: "kata-deploy", Short: "test"}
	var flag string
	sub := &cobra.Command{Use: "uninstall", Short: "undo", Long: "uses <prefix>/manifest.json and <config dir>/conf.d", Run: func(*cobra.Command, []string) {}}
	sub.Flags().StringVar(&flag, "artifacts", "", "into <prefix>/versions/<id>/")
	root.AddCommand(sub, &cobra.Command{Use: "secret", Hidden: true, Run: func(*cobra.Command, []string) {}})
	pages, err := manPages(root, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var page string
	for _, p := range pages {
		names = append(names, p.dst)
		if strings.HasSuffix(p.dst, "/kata-deploy-uninstall.1.gz") {
			page = gunzip(t, p.data)
		}
	}
	if strings.Contains(strings.Join(names, " "), "secret") || page == "" {
		t.Fatalf("pages: %v", names)
	}
	for _, want := range []string{"<prefix>/manifest.json", "<config dir>/conf.d", "<prefix>/versions/<id>/", `"Dec 2026"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the man page lacks %q:\n%s", want, page)
		}
	}
}

func gunzip(t *testing.T, data []byte) string {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
