// Command conformance runs Docker's own integration tests (moby's integration/container and
// integration/volume packages, at the test engine's pinned version) against a dedicated test
// engine (hack/engine.sh with KATA_TEST_ENGINE_INSTANCE) whose default runtime is kata, or runc to
// prove the selection.
//
//	KATA_TEST_ENGINE_INSTANCE=conformance hack/engine.sh up
//	. /var/lib/kata-deploy-test-engine-conformance/env
//	go run ./tests/conformance [-runtime kata|runc] [-shard K/N] [-run REGEXP]
//
// The test binaries are compiled inside a writable copy of the module taken from the Go module
// cache (they import the module's internal test helpers) and cached under -cache, keyed by the
// module version and the Go version. Four lists beside this file say which tests are not run
// (not-run.txt), which fail under kata by design (vm-differences.txt), which fail under kata
// because of a bug still to fix (known-failures.txt) and which because of what Docker's engine
// does with any runtimeType runtime (engine-limits.txt). The run fails on any other failure, and on
// a listed failure that now passes, so the lists only shrink.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// packages are moby's integration test packages the suite runs.
var packages = []string{"container", "volume"}

// stateDir is the kata runtime's state directory in the dedicated engine: not the e2e tests'
// (testenv.StateDir), whose leak checks must not see this suite's VMs. Short: sockets live below.
const stateDir = "/run/kata-conformance"

// frozenImages are the images moby's TestMain insists on (environment.EnsureFrozenImagesLinux
// pulls the missing ones, and there is no registry here). The ones other than busybox:latest are
// tagged from it so TestMain starts; the tests that need their real content are in not-run.txt.
var frozenImages = []string{"busybox:glibc", "hello-world:frozen", "debian:trixie-slim", "hello-world:amd64", "hello-world:arm64"}

func main() {
	os.Exit(run())
}

type options struct {
	runtime string
	cache   string
	shard   [2]int // 1-based index, count
	run     *regexp.Regexp
	timeout time.Duration
}

func run() int {
	var o options
	var shard, runRE string
	flag.StringVar(&o.runtime, "runtime", "kata", "the engine's default runtime for the run: kata or runc")
	flag.StringVar(&o.cache, "cache", "/var/cache/kata-deploy/conformance", "where the module copy and the test binaries are cached")
	flag.StringVar(&shard, "shard", "1/1", "run only the K-th of N equal parts of the selection (K/N)")
	flag.StringVar(&runRE, "run", "", "run only the selected tests whose name matches this regular expression")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "the test binaries' -test.timeout")
	flag.Parse()
	if o.runtime != "kata" && o.runtime != "runc" {
		return usage("-runtime must be kata or runc")
	}
	if _, err := fmt.Sscanf(shard, "%d/%d", &o.shard[0], &o.shard[1]); err != nil || o.shard[1] < 1 || o.shard[0] < 1 || o.shard[0] > o.shard[1] {
		return usage("-shard wants K/N with 1 <= K <= N")
	}
	if runRE != "" {
		re, err := regexp.Compile(runRE)
		if err != nil {
			return usage("-run: " + err.Error())
		}
		o.run = re
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := conform(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: error:", err)
		return 1
	}
	if !ok {
		return 1
	}
	return 0
}

func usage(msg string) int {
	fmt.Fprintln(os.Stderr, "conformance:", msg)
	flag.Usage()
	return 2
}

func conform(ctx context.Context, o options) (bool, error) {
	start := time.Now()
	ls, err := loadLists()
	if err != nil {
		return false, err
	}
	// Never the shared engine: moby's tests delete every container, volume and network they did
	// not see at start, and some remove docker0 or flush iptables.
	if os.Getenv("KATA_TEST_ENGINE_INSTANCE") == "" || os.Getenv("KATA_TEST_ENGINE_NETNS") == "" || !testenv.EngineUp() {
		return false, errors.New("needs a dedicated test engine: KATA_TEST_ENGINE_INSTANCE=conformance hack/engine.sh up, then source its env file")
	}
	version, err := mobyVersion()
	if err != nil {
		return false, err
	}
	src, bins, err := buildTestBinaries(ctx, o.cache, version)
	if err != nil {
		return false, err
	}
	selected := map[string][]string{}
	total := 0
	var all []string
	for _, pkg := range packages {
		tests, err := listTests(filepath.Join(src, "integration", pkg))
		if err != nil {
			return false, err
		}
		for _, t := range tests {
			all = append(all, pkg+"/"+t)
		}
	}
	if err := checkListed(ls, all); err != nil {
		return false, err
	}
	sort.Strings(all)
	i := 0
	for _, pt := range all {
		pkg, t, _ := strings.Cut(pt, "/")
		if _, skip := ls.notRun[t]; skip {
			continue
		}
		if o.run != nil && !o.run.MatchString(t) {
			continue
		}
		if i%o.shard[1] == o.shard[0]-1 {
			selected[pkg] = append(selected[pkg], t)
			total++
		}
		i++
	}
	fmt.Printf("conformance: moby %s integration/{%s}, default runtime %s, %d tests (shard %d/%d; %d not run, see tests/conformance/not-run.txt)\n",
		version, strings.Join(packages, ","), o.runtime, total, o.shard[0], o.shard[1], len(ls.notRun))

	if err := setUpRuntime(ctx, o.runtime); err != nil {
		return false, err
	}
	if err := tagFrozenImages(ctx); err != nil {
		return false, err
	}
	// Some tests leave containers behind (those that fail before their cleanup, and those that
	// never register one): the next test's environment.ProtectAll would keep them, and a VM
	// container left running costs memory. The engine is dedicated: empty it before and after.
	if err := emptyEngine(ctx); err != nil {
		return false, err
	}
	defer func() {
		if err := emptyEngine(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: emptying the engine after the run:", err)
		}
	}()

	var results []result
	for _, pkg := range packages {
		if len(selected[pkg]) == 0 {
			continue
		}
		dir := filepath.Join(src, "integration", pkg)
		rs, err := runPackage(ctx, o, pkg, bins[pkg], dir, selected[pkg], func(r result) { printResult(ls, o.runtime, r) })
		if err != nil {
			return false, err
		}
		// An unexpected failure is run once more, alone: some tests wait a few seconds for what a
		// VM under emulation (TCG) on a loaded host can take longer to do. One that passes then
		// counts as passed and is named in the totals as flaky.
		var again []string
		for _, r := range rs {
			if e, _ := ls.expect(o.runtime, r.test); e == expectPass && r.action == "fail" {
				again = append(again, r.test)
			}
		}
		if len(again) > 0 {
			fmt.Printf("conformance: running %d unexpected failure(s) again: %s\n", len(again), strings.Join(again, " "))
			retried, err := runPackage(ctx, o, pkg, bins[pkg], dir, again, func(r result) { printResult(ls, o.runtime, r) })
			if err != nil {
				return false, err
			}
			for _, r2 := range retried {
				for i := range rs {
					if rs[i].test == r2.test && r2.action == "pass" {
						rs[i].action, rs[i].flaky = "pass", true
					}
				}
			}
		}
		results = append(results, rs...)
	}
	return summarize(ls, o.runtime, results, time.Since(start)), nil
}

// mobyVersion is the engine's pinned module version, read from hack/engine.sh (one place).
func mobyVersion() (string, error) {
	data, err := os.ReadFile("hack/engine.sh")
	if err != nil {
		return "", fmt.Errorf("run from the repository's root: %w", err)
	}
	m := regexp.MustCompile(`(?m)^MOBY_VERSION=(v[0-9A-Za-z.+-]+)$`).FindSubmatch(data)
	if m == nil {
		return "", errors.New("hack/engine.sh sets no MOBY_VERSION")
	}
	return string(m[1]), nil
}

// buildTestBinaries compiles the test packages once per module and Go version: a writable copy
// of the module from the module cache (go mod download), `go test -c` inside it. The copy stays:
// some tests read their testdata relative to the package directory.
func buildTestBinaries(ctx context.Context, cache, version string) (string, map[string]string, error) {
	dir := filepath.Join(cache, "moby-"+version+"-"+runtime.Version())
	src := filepath.Join(dir, "src")
	bins := map[string]string{}
	missing := false
	for _, pkg := range packages {
		bins[pkg] = filepath.Join(dir, pkg+".test")
		if _, err := os.Stat(bins[pkg]); err != nil {
			missing = true
		}
	}
	if _, err := os.Stat(src); err != nil {
		missing = true
	}
	if !missing {
		return src, bins, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	unlock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	fmt.Printf("conformance: building moby %s's integration tests into %s (once)\n", version, dir)
	out, err := goCmd(ctx, dir, nil, "mod", "download", "-json", "github.com/moby/moby/v2@"+version).Output()
	if err != nil {
		return "", nil, fmt.Errorf("go mod download github.com/moby/moby/v2@%s: %w", version, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", nil, fmt.Errorf("go mod download gave no module directory (%s): %v", mod.Error, err)
	}
	tmp := src + ".tmp"
	os.RemoveAll(tmp)
	if err := copyTree(mod.Dir, tmp); err != nil {
		return "", nil, fmt.Errorf("copying the module: %w", err)
	}
	os.RemoveAll(src)
	if err := os.Rename(tmp, src); err != nil {
		return "", nil, err
	}
	for _, pkg := range packages {
		cmd := goCmd(ctx, src, []string{"GOFLAGS=-mod=mod"}, "test", "-c", "-o", bins[pkg]+".tmp", "./integration/"+pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", nil, fmt.Errorf("go test -c ./integration/%s: %w", pkg, err)
		}
		if err := os.Rename(bins[pkg]+".tmp", bins[pkg]); err != nil {
			return "", nil, err
		}
	}
	return src, bins, nil
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// copyTree copies a directory of regular files, directories and symlinks, writable by its owner
// (the module cache is read-only).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, info.Mode().Perm()|0o200)
		}
		return nil
	})
}

var testFunc = regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]*)\(t \*testing\.T\)`)

// listTests finds a package's top-level tests in its Linux test files.
func listTests(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	var tests []string
	for _, f := range files {
		if strings.HasSuffix(f, "_windows_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range testFunc.FindAllSubmatch(data, -1) {
			tests = append(tests, string(m[1]))
		}
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("no tests in %s", dir)
	}
	return tests, nil
}

// checkListed refuses a list entry that names no test of the packages (renamed upstream, typo).
func checkListed(ls *lists, all []string) error {
	exists := map[string]bool{}
	for _, pt := range all {
		_, t, _ := strings.Cut(pt, "/")
		exists[t] = true
	}
	for _, l := range []list{ls.notRun, ls.vmDifferences, ls.knownFailures, ls.engineLimits} {
		for t := range l {
			if !exists[t] {
				return fmt.Errorf("%s is listed but is not a test of integration/{%s}", t, strings.Join(packages, ","))
			}
		}
	}
	return nil
}

// setUpRuntime makes rt the dedicated engine's default runtime; for kata it first builds the
// shim and the guest image from this tree and registers them (internal/testenv).
func setUpRuntime(ctx context.Context, rt string) error {
	if rt == "kata" {
		binDir := filepath.Join(filepath.Dir(os.Getenv("KATA_TEST_DAEMON_JSON")), "kata")
		if err := os.MkdirAll(binDir, 0o755); err != nil {
			return err
		}
		fmt.Println("conformance: building the shim and the guest image, registering kata")
		k, err := testenv.SetUpKata(ctx, binDir, "kata")
		if err != nil {
			return err
		}
		if _, err := k.RegisterVariant("kata", func(c *config.Config) { c.Runtime.StateDir = stateDir }); err != nil {
			return err
		}
	}
	return setDefaultRuntime(rt)
}

// setDefaultRuntime writes default-runtime into the engine's daemon.json and reloads dockerd
// until `docker info` reports it.
func setDefaultRuntime(rt string) error {
	path := os.Getenv("KATA_TEST_DAEMON_JSON")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := map[string]any{}
	if strings.TrimSpace(string(data)) != "" {
		if err := json.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	doc["default-runtime"] = rt
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		return err
	}
	if err := testenv.ReloadDockerd(); err != nil {
		return err
	}
	for range 100 {
		got, _ := exec.Command("docker", "info", "--format", "{{.DefaultRuntime}}").Output()
		if strings.TrimSpace(string(got)) == rt {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("dockerd's default runtime is not %s after a reload", rt)
}

func tagFrozenImages(ctx context.Context) error {
	for _, img := range frozenImages {
		if exec.CommandContext(ctx, "docker", "image", "inspect", img).Run() == nil {
			continue
		}
		if out, err := exec.CommandContext(ctx, "docker", "tag", "busybox:latest", img).CombinedOutput(); err != nil {
			return fmt.Errorf("docker tag busybox:latest %s: %v: %s", img, err, out)
		}
	}
	return nil
}

// emptyEngine removes every container, then unused volumes and networks, of the dedicated engine.
func emptyEngine(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq").Output()
	if err != nil {
		return fmt.Errorf("docker ps: %w", err)
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		fmt.Printf("conformance: removing %d container(s) left in the dedicated engine\n", len(ids))
		if out, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("docker rm -f: %v: %s", err, out)
		}
	}
	for _, args := range [][]string{{"volume", "prune", "-a", "-f"}, {"network", "prune", "-f"}} {
		if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// result is one top-level test's outcome.
type result struct {
	pkg, test string
	action    string // pass, fail or skip
	flaky     bool   // failed, then passed when run again
	elapsed   time.Duration
	output    []string // its output and its subtests'
}

// event is one line of test2json's output.
type event struct {
	Action  string
	Test    string
	Elapsed float64
	Output  string
}

// runPackage runs one test binary inside the engine's network namespace (published ports and the
// engine's bridge are only reachable there) and returns its top-level tests' results, calling
// done for each as it ends.
func runPackage(ctx context.Context, o options, pkg, bin, dir string, tests []string, done func(result)) ([]result, error) {
	args := []string{"tool", "test2json", "-t", "-p", pkg,
		"nsenter", "--net=" + os.Getenv("KATA_TEST_ENGINE_NETNS"), "--",
		bin, "-test.v=test2json", "-test.count=1", "-test.timeout=" + o.timeout.String(), "-test.run=" + exactRegexp(tests)}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		// Tests that start their own daemon are not run; those that would need a place for it.
		"DOCKER_INTEGRATION_DAEMON_DEST="+filepath.Join(filepath.Dir(os.Getenv("KATA_TEST_DAEMON_JSON")), "moby-daemons"))
	cmd.Stderr = os.Stderr
	// Interrupted, the whole chain (go tool, test2json, nsenter, the test binary) is stopped.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	byName := map[string]*result{}
	var order []*result
	var pkgOutput []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			pkgOutput = append(pkgOutput, sc.Text())
			continue
		}
		if ev.Test == "" {
			if ev.Action == "output" {
				pkgOutput = append(pkgOutput, strings.TrimRight(ev.Output, "\n"))
			}
			continue
		}
		top, _, _ := strings.Cut(ev.Test, "/")
		r := byName[top]
		if r == nil {
			r = &result{pkg: pkg, test: top}
			byName[top] = r
			order = append(order, r)
		}
		switch ev.Action {
		case "output":
			r.output = append(r.output, strings.TrimRight(ev.Output, "\n"))
		case "pass", "fail", "skip":
			if ev.Test == top {
				r.action, r.elapsed = ev.Action, time.Duration(ev.Elapsed*float64(time.Second))
				done(*r)
			}
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	var rs []result
	for _, r := range order {
		if r.action == "" {
			// Started, never ended: the binary panicked or timed out in it.
			r.action = "fail"
			r.output = append(r.output, "no result: the test binary ended during this test")
			r.output = append(r.output, tail(pkgOutput, 20)...)
			done(*r)
		}
		rs = append(rs, *r)
	}
	// A selected test the binary never started (TestMain failed, the binary died) fails too.
	for _, t := range tests {
		if byName[t] == nil {
			r := result{pkg: pkg, test: t, action: "fail", output: append([]string{"not run: the test binary ended before it"}, tail(pkgOutput, 20)...)}
			done(r)
			rs = append(rs, r)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return nil, waitErr
	}
	if waitErr != nil && !anyFailed(rs) {
		// Every test passed, yet the binary failed: its TestMain or a package-level check did.
		return nil, fmt.Errorf("%s: the test binary failed (%v) though no test did:\n%s", pkg, waitErr, strings.Join(tail(pkgOutput, 20), "\n"))
	}
	return rs, nil
}

func anyFailed(rs []result) bool {
	for _, r := range rs {
		if r.action == "fail" {
			return true
		}
	}
	return false
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// errorLines picks a failed test's assertion messages from its output (the lines that name a
// _test.go file, as testing and gotest.tools print them, and the lines that follow them).
func errorLines(output []string, max int) []string {
	var out []string
	for i, l := range output {
		t := strings.TrimSpace(l)
		if strings.Contains(t, "_test.go:") || strings.HasPrefix(t, "panic:") || strings.HasPrefix(t, "no result:") || strings.HasPrefix(t, "not run:") {
			out = append(out, t)
			for j := i + 1; j < len(output) && j <= i+2; j++ {
				n := strings.TrimSpace(output[j])
				if n == "" || strings.HasPrefix(n, "---") || strings.HasPrefix(n, "===") || strings.Contains(n, "_test.go:") {
					break
				}
				out = append(out, "  "+n)
			}
		}
		if len(out) >= max {
			break
		}
	}
	return out
}

func printResult(ls *lists, rt string, r result) {
	e, reason := ls.expect(rt, r.test)
	ok, note := verdict(e, reason, r.action)
	line := fmt.Sprintf("%-4s %s/%s %.1fs", strings.ToUpper(r.action), r.pkg, r.test, r.elapsed.Seconds())
	if note != "" {
		line += "  (" + note + ")"
	}
	fmt.Println(line)
	if r.action == "fail" && !ok {
		for _, l := range errorLines(r.output, 8) {
			fmt.Println("       " + l)
		}
	} else if r.action == "fail" {
		if l := errorLines(r.output, 1); len(l) > 0 {
			fmt.Println("       " + l[0])
		}
	}
}

// summarize prints the totals and returns whether the run passes.
func summarize(ls *lists, rt string, results []result, wall time.Duration) bool {
	var passed, failed, skipped, expected, bad int
	var problems, flaky []string
	for _, r := range results {
		if r.flaky {
			flaky = append(flaky, r.pkg+"/"+r.test)
		}
		e, reason := ls.expect(rt, r.test)
		ok, note := verdict(e, reason, r.action)
		switch r.action {
		case "pass":
			passed++
		case "fail":
			failed++
			if ok {
				expected++
			}
		case "skip":
			skipped++
		}
		if !ok {
			bad++
			problems = append(problems, r.pkg+"/"+r.test+": "+note)
		}
	}
	fmt.Printf("\nconformance (%s): %d passed, %d failed (%d of them listed), %d skipped, wall time %s\n",
		rt, passed, failed, expected, skipped, wall.Round(time.Second))
	if len(flaky) > 0 {
		fmt.Printf("  flaky (failed, then passed alone): %s\n", strings.Join(flaky, " "))
	}
	for _, p := range problems {
		fmt.Println("  " + p)
	}
	if passed == 0 {
		// A selection that ran nothing (a -run that matches no test, every test skipped) proves
		// nothing: it is not a success.
		problems = append(problems, "no test passed: the selection ran nothing")
		fmt.Println("  " + problems[len(problems)-1])
		bad++
	}
	if bad == 0 {
		fmt.Println("conformance: OK: every failure is listed, every listed failure still fails")
	} else {
		fmt.Println("conformance: FAILED: " + strconv.Itoa(bad) + " result(s) not as the lists say")
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	return bad == 0
}
