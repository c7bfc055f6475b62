package distro

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// generated is one file made from the command tree: its path in the package and its bytes.
type generated struct {
	dst  string
	data []byte
}

// manPages renders a section-1 page for every visible command of root, gzipped as Debian's
// policy wants (gzip -n: no name, no time, so the bytes depend on the text only).
func manPages(root *cobra.Command, date time.Time) ([]generated, error) {
	root.DisableAutoGenTag = true // its "Auto generated" line carries the build's date
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	header := &doc.GenManHeader{Title: strings.ToUpper(root.Name()), Section: "1", Source: "kata-deploy", Manual: "kata-deploy manual", Date: &date}
	var out []generated
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != root {
			return nil
		}
		escapeMarkdown(c)
		var page bytes.Buffer
		h := *header // GenMan fills fields of the header it is given
		if err := doc.GenMan(c, &h, &page); err != nil {
			return fmt.Errorf("man page of %q: %w", c.CommandPath(), err)
		}
		gz, err := gzipBytes(page.Bytes())
		if err != nil {
			return err
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1.gz"
		out = append(out, generated{dst: "/usr/share/man/man1/" + name, data: gz})
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dst < out[j].dst })
	return out, nil
}

// htmlLike is text such as <prefix> or <config dir>: cobra/doc renders help through Markdown,
// where it would be an HTML tag and vanish. A backslash before each bracket keeps it as text.
var htmlLike = regexp.MustCompile(`<([A-Za-z][A-Za-z0-9 _-]*)>`)

func escapeHTMLLike(s string) string { return htmlLike.ReplaceAllString(s, `\<$1\>`) }

// escapeMarkdown escapes the command's prose (not its examples: they are a code block, shown as
// written) and its flags' descriptions. The tree is the caller's own copy.
func escapeMarkdown(c *cobra.Command) {
	c.Short = escapeHTMLLike(c.Short)
	c.Long = escapeHTMLLike(c.Long)
	for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.InheritedFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { f.Usage = escapeHTMLLike(f.Usage) })
	}
}

// completionPaths are where each shell looks for vendor completions, per package family:
// Debian's zsh reads vendor-completions, Fedora's site-functions.
var completionPaths = map[string]map[string]string{
	"deb": {
		"bash": "/usr/share/bash-completion/completions/kata-deploy",
		"zsh":  "/usr/share/zsh/vendor-completions/_kata-deploy",
		"fish": "/usr/share/fish/vendor_completions.d/kata-deploy.fish",
	},
	"rpm": {
		"bash": "/usr/share/bash-completion/completions/kata-deploy",
		"zsh":  "/usr/share/zsh/site-functions/_kata-deploy",
		"fish": "/usr/share/fish/vendor_completions.d/kata-deploy.fish",
	},
}

// completions renders the bash, zsh and fish completion scripts of root for a package family.
func completions(root *cobra.Command, family string) ([]generated, error) {
	paths, ok := completionPaths[family]
	if !ok {
		return nil, fmt.Errorf("no completion paths for package family %q", family)
	}
	var out []generated
	for _, shell := range []string{"bash", "fish", "zsh"} {
		var b bytes.Buffer
		var err error
		switch shell {
		case "bash":
			err = root.GenBashCompletionV2(&b, true)
		case "zsh":
			err = root.GenZshCompletion(&b)
		case "fish":
			err = root.GenFishCompletion(&b, true)
		}
		if err != nil {
			return nil, fmt.Errorf("%s completion: %w", shell, err)
		}
		out = append(out, generated{dst: paths[shell], data: b.Bytes()})
	}
	return out, nil
}

func gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
