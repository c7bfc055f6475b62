package hostinfo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// Distro is what os-release(5) says about the distribution.
type Distro struct {
	ID         string   // e.g. "debian", "opensuse-leap"
	IDLike     []string // ID_LIKE split on spaces, closest relative first
	VersionID  string   // e.g. "12", "24.04"; empty on rolling releases (Arch)
	PrettyName string
	// PackageManager is "apt", "dnf", "yum", "zypper", "pacman", "apk", or "" when unknown.
	PackageManager string
}

// ReadDistro reads root/etc/os-release, falling back to root/usr/lib/os-release as os-release(5)
// prescribes. Symlinks are resolved inside root, so root may be a mounted host filesystem.
func ReadDistro(root string) (Distro, error) {
	var errs []error
	for _, name := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := readInRoot(root, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d, err := ParseOSRelease(bytes.NewReader(data))
		if err != nil {
			return d, fmt.Errorf("%s: %w", filepath.Join(root, name), err)
		}
		return d, nil
	}
	return Distro{}, fmt.Errorf("cannot identify the distribution: neither %s nor %s is readable (%w)",
		filepath.Join(root, "etc/os-release"), filepath.Join(root, "usr/lib/os-release"), errors.Join(errs...))
}

// ParseOSRelease parses an os-release file. On a malformed line it still returns every field it
// could read, together with an error naming the first bad line.
func ParseOSRelease(r io.Reader) (Distro, error) {
	vars, err := parseEnvFile(r)
	d := Distro{
		ID:         vars["ID"],
		VersionID:  vars["VERSION_ID"],
		PrettyName: vars["PRETTY_NAME"],
	}
	if like := strings.Fields(vars["ID_LIKE"]); len(like) > 0 {
		d.IDLike = like
	}
	d.PackageManager = packageManager(d)
	return d, err
}

// packageManager looks at ID first, then at each ID_LIKE entry: derivatives (Rocky, Mint, Manjaro)
// name their parent there.
func packageManager(d Distro) string {
	for _, id := range append([]string{d.ID}, d.IDLike...) {
		pm := packageManagerFor(strings.ToLower(id))
		if pm == "" {
			continue
		}
		// The RHEL family before 8 (RHEL/CentOS/Oracle 7) and Amazon Linux 2 only have yum;
		// Fedora-family version numbers never go below 8 in the os-release era.
		if pm == "dnf" && majorVersion(d.VersionID) > 0 && majorVersion(d.VersionID) < 8 {
			return "yum"
		}
		return pm
	}
	return ""
}

func packageManagerFor(id string) string {
	switch {
	case id == "debian" || id == "ubuntu":
		return "apt"
	case id == "fedora" || id == "rhel" || id == "centos" || id == "amzn":
		return "dnf"
	case strings.HasPrefix(id, "opensuse") || id == "suse" || id == "sles":
		return "zypper"
	case id == "arch":
		return "pacman"
	case id == "alpine":
		return "apk"
	}
	return ""
}

// majorVersion returns the leading number of a VERSION_ID ("9.4" -> 9), or 0.
func majorVersion(v string) int {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	n, err := strconv.Atoi(v[:end])
	if err != nil {
		return 0
	}
	return n
}

// parseEnvFile reads KEY=value assignments with the shell quoting os-release(5) allows: single
// quotes (literal), double quotes (backslash escapes $ " \ ` and newline), backslash escapes
// outside quotes, '#' comments and blank lines. A bad line is skipped and reported; parsing goes on.
func parseEnvFile(r io.Reader) (map[string]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSmallFile))
	if err != nil {
		return nil, err
	}
	p := envParser{src: data, line: 1}
	vars := map[string]string{}
	var first error
	for !p.eof() {
		key, value, err := p.assignment()
		if err != nil {
			if first == nil {
				first = err
			}
			p.skipLine()
			continue
		}
		if key != "" {
			vars[key] = value
		}
	}
	return vars, first
}

type envParser struct {
	src  []byte
	pos  int
	line int
}

func (p *envParser) eof() bool { return p.pos >= len(p.src) }

func (p *envParser) peek() byte { return p.src[p.pos] }

func (p *envParser) next() byte {
	c := p.src[p.pos]
	p.pos++
	if c == '\n' {
		p.line++
	}
	return c
}

func (p *envParser) skipLine() {
	for !p.eof() && p.next() != '\n' {
	}
}

func (p *envParser) skipBlanks() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t' || p.peek() == '\r') {
		p.pos++
	}
}

func (p *envParser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: "+format, append([]any{p.line}, args...)...)
}

// assignment parses one line. It returns an empty key for blank and comment lines.
func (p *envParser) assignment() (string, string, error) {
	p.skipBlanks()
	if p.eof() {
		return "", "", nil
	}
	switch p.peek() {
	case '\n':
		p.next()
		return "", "", nil
	case '#':
		p.skipLine()
		return "", "", nil
	}
	key := p.key()
	if key == "" || p.eof() || p.peek() != '=' {
		return "", "", p.errorf("expected KEY=value")
	}
	p.next()
	value, err := p.value()
	if err != nil {
		return "", "", err
	}
	p.skipBlanks()
	switch {
	case p.eof():
	case p.peek() == '\n':
		p.next()
	case p.peek() == '#':
		p.skipLine()
	default:
		return "", "", p.errorf("unexpected text after the value of %s (values with spaces must be quoted)", key)
	}
	return key, value, nil
}

func (p *envParser) key() string {
	start := p.pos
	for !p.eof() {
		c := p.peek()
		isLetter := c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
		if !isLetter && (p.pos == start || c < '0' || c > '9') {
			break
		}
		p.pos++
	}
	return string(p.src[start:p.pos])
}

// value reads one shell word: quoted and unquoted pieces concatenate, as in sh.
func (p *envParser) value() (string, error) {
	var b strings.Builder
	for !p.eof() {
		switch c := p.peek(); c {
		case ' ', '\t', '\r', '\n':
			return b.String(), nil
		case '\'':
			p.next()
			if err := p.singleQuoted(&b); err != nil {
				return "", err
			}
		case '"':
			p.next()
			if err := p.doubleQuoted(&b); err != nil {
				return "", err
			}
		case '\\':
			p.next()
			if p.eof() {
				return "", p.errorf("backslash at end of file")
			}
			if e := p.next(); e != '\n' { // backslash-newline continues the line
				b.WriteByte(e)
			}
		default:
			b.WriteByte(p.next())
		}
	}
	return b.String(), nil
}

func (p *envParser) singleQuoted(b *strings.Builder) error {
	start := p.line
	for !p.eof() {
		c := p.next()
		if c == '\'' {
			return nil
		}
		b.WriteByte(c)
	}
	return fmt.Errorf("line %d: unterminated single quote", start)
}

func (p *envParser) doubleQuoted(b *strings.Builder) error {
	start := p.line
	for !p.eof() {
		c := p.next()
		switch c {
		case '"':
			return nil
		case '\\':
			if p.eof() {
				break
			}
			switch e := p.next(); e {
			case '$', '"', '\\', '`':
				b.WriteByte(e)
			case '\n': // line continuation
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return fmt.Errorf("line %d: unterminated double quote", start)
}
