package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/template"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot files, in bench/ beside the report.
const (
	startupPlot = "startup.png"
	densityPlot = "density.png"
)

// writeReport writes the Markdown report and its plots.
func writeReport(path string, r *results) error {
	plots := filepath.Join(filepath.Dir(path), "bench")
	if err := os.MkdirAll(plots, 0o755); err != nil {
		return err
	}
	if err := plotStartup(filepath.Join(plots, startupPlot), r); err != nil {
		return fmt.Errorf("plotting start-up: %w", err)
	}
	if len(r.Density[kindKata]) > 0 {
		if err := plotDensity(filepath.Join(plots, densityPlot), r.Density[kindKata]); err != nil {
			return fmt.Errorf("plotting density: %w", err)
		}
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, reportData(r)); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

type kindRow struct {
	Name, Median, Min, Max string
}

func reportData(r *results) map[string]any {
	var rows []kindRow
	for _, k := range kindOrder {
		d := r.Times[k]
		if len(d) == 0 {
			rows = append(rows, kindRow{Name: k, Median: "n/a (not built)", Min: "", Max: ""})
			continue
		}
		rows = append(rows, kindRow{k, ms(median(d)), ms(slices.Min(d)), ms(slices.Max(d))})
	}
	var variantRatios []string
	for _, k := range measuredVariants(r) {
		variantRatios = append(variantRatios, fmt.Sprintf("%s/floor = **%.2fx**, %s/runc = **%.2fx**.",
			k, r.ratio(k, kindFloor), k, r.ratio(k, kindRunc)))
	}
	var variantDensity []densityTable
	for _, v := range variants {
		if points := r.Density[v.kind]; len(points) > 0 {
			variantDensity = append(variantDensity, densityTable{Intro: v.densityIntro, Waiting: v.pool, Rows: densityRows(points)})
		}
	}
	return map[string]any{
		"VariantRatios": variantRatios, "VariantDensity": variantDensity, "SmallTB": smallTBMiB,
		"M": r.Machine, "Date": r.Machine.Date.Format(time.RFC3339), "Runs": r.Runs, "Rows": rows,
		"KataFloor": fmt.Sprintf("%.2fx", r.ratio(kindKata, kindFloor)),
		"KataRunc":  fmt.Sprintf("%.2fx", r.ratio(kindKata, kindRunc)),
		"Memory":    mib(r.Machine.MemoryKiB), "Density": densityTable{Rows: densityRows(r.Density[kindKata])},
		"Trace":       traceRows(r.Trace),
		"StartupPlot": "bench/" + startupPlot, "DensityPlot": "bench/" + densityPlot,
	}
}

var reportTemplate = template.Must(template.New("report").Parse(`# Benchmarks

Written by ` + "`make bench`" + ` (bench/startup): do not edit, run it again. Measured {{.Date}}.

## Machine

| | |
|---|---|
| CPU | {{.M.CPU}}, {{.M.Cores}} cores |
| memory | {{.Memory}} |
| host kernel | {{.M.HostKernel}} |
| accelerator | {{.M.Accel}} ({{.M.Reason}}) |
| QEMU | {{.M.QEMU}} |
| Docker Engine | {{.M.Docker}} |
| guest | kernel {{.M.GuestKernel}}, {{.M.VCPUs}} vCPU, {{.M.GuestMiB}} MiB |

## Start-up

` + "`docker run --rm --runtime=<runtime> busybox true`" + `, start to exit, {{.Runs}} runs of each kind,
interleaved round by round (one warm-up round not counted), so that the ratios compare like with
like on a shared machine. After each kata run the benchmark waits, uncounted, until the runtime's
teardown has ended (Docker's removal of a container does not wait for its QEMU to exit), so that no
kind is measured while another's teardown runs.

- **runc**: Docker's default runtime, no VM.
- **kata**: this tree's runtime.
- **kata+template**: kata with VM templating (` + "`[factory] template = true`" + `, measured with ` + "`-template`" + `):
  the warm-up round builds the template, the counted runs start clones of it. "n/a" when not measured.
- **kata+pool**: kata+template with a pool of one clone (` + "`[factory] pool = 1`" + `, measured with ` + "`-pool`" + `):
  a container takes the clone waiting in the pool (restored from the template and warmed ahead of
  time) and a detached filler restores the next one in the background. The warm-up round builds the
  template; after each run the benchmark waits, uncounted, until the pool holds a waiting clone
  again, so that no refill runs while another kind is measured. "n/a" when not measured.
- **kata+template+tb**: kata+template with ` + "`[hypervisor] tcg_translation_buffer`" + ` set{{with .SmallTB}} to {{.}} MiB{{end}} (measured with
  ` + "`-template-tb MiB`" + `): under TCG each clone keeps at most that much translated code (less host memory)
  and translates again what a full buffer flushed (a slower start). "n/a" when not measured.
- **floor**: no Docker and no runtime code: a plain ` + "`qemu-system-x86_64`" + ` command line (the same kernel,
  initrd modules, qboot, machine, vCPUs and memory; a serial console, virtio-serial and one 9p share,
  no PCIe root ports) booting a minimal Go ` + "`/init`" + ` that loads 11 modules, mounts the share, runs
  ` + "`busybox true`" + ` in it, reports the exit status and powers off. What any VM container costs at least.

| | median | min | max |
|---|---:|---:|---:|
{{range .Rows}}| {{.Name}} | {{.Median}} | {{.Min}} | {{.Max}} |
{{end}}
kata/floor = **{{.KataFloor}}**, kata/runc = **{{.KataRunc}}**.
{{range .VariantRatios}}{{.}}
{{end}}
![start-up medians]({{.StartupPlot}})
{{if .Trace}}
### Where a kata container's time goes

One idle container (` + "`docker create`" + ` + ` + "`docker start`" + `, then ` + "`docker kill`" + `) under the runtime with the
agent's debug log on (` + "`-trace`" + `): host steps from the start times of the shim and QEMU processes (10 ms
resolution), guest steps from the kernel timestamps of the agent's lines on the guest console, the two
joined at the start request (so "QEMU setup + firmware" is an estimate). One run, not a median.

| step | took |
|---|---:|
{{range .Trace}}| {{.Name}} | {{.Median}} |
{{end}}{{end}}{{if .Density.Rows}}
## Density

N idle kata containers (` + "`docker run -d --runtime=kata busybox sleep 1d`" + `) started one after another;
host memory is the proportional set size (PSS, ` + "`/proc/<pid>/smaps_rollup`" + `) of each container's
QEMU, shim and virtiofsd (none with 9p), read {{"3 s"}} after the Nth started. "start of Nth" is the
` + "`docker run -d`" + ` of the Nth container, with N-1 others idle.

{{template "density" .Density}}{{range .VariantDensity}}
{{.Intro}}

{{template "density" .}}{{end}}
![host PSS vs idle containers]({{.DensityPlot}})
{{end}}{{define "density"}}| N | total | per container | QEMU | shim | virtiofsd | start of Nth |{{if .Waiting}} waiting clone's QEMU |{{end}}
|---:|---:|---:|---:|---:|---:|---:|{{if .Waiting}}---:|{{end}}
{{range .Rows}}| {{.N}} | {{.Total}} | {{.Per}} | {{.QEMU}} | {{.Shim}} | {{.Virtiofsd}} | {{.Start}} |{{if $.Waiting}} {{.Waiting}} |{{end}}
{{end}}{{end}}`))

// densityTable is one density table of the report: its introduction (none for kata's), its rows,
// and whether it has the waiting clone's column (kata+pool).
type densityTable struct {
	Intro   string
	Waiting bool
	Rows    []map[string]string
}

func densityRows(points []densityPoint) []map[string]string {
	var rows []map[string]string
	for _, p := range points {
		rows = append(rows, map[string]string{
			"N": fmt.Sprint(p.N), "Total": mib(p.Total()), "Per": mib(p.Total() / int64(p.N)),
			"QEMU": mib(p.QEMU), "Shim": mib(p.Shim), "Virtiofsd": mib(p.Virtiofsd), "Start": ms(p.StartNth),
			"Waiting": mib(p.Waiting),
		})
	}
	return rows
}

func traceRows(steps []traceStep) []kindRow {
	var rows []kindRow
	for _, s := range steps {
		rows = append(rows, kindRow{Name: s.Name, Median: ms(s.Took)})
	}
	return rows
}

func plotStartup(path string, r *results) error {
	p := plot.New()
	p.Title.Text = "docker run --rm busybox true: median start+stop"
	p.Y.Label.Text = "ms"
	var names []string
	var vals plotter.Values
	for _, k := range kindOrder {
		if d := r.Times[k]; len(d) > 0 {
			names = append(names, k)
			vals = append(vals, float64(median(d))/float64(time.Millisecond))
		}
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(names...)
	return p.Save(5*vg.Inch, 3.5*vg.Inch, path)
}

func plotDensity(path string, points []densityPoint) error {
	p := plot.New()
	p.Title.Text = "host PSS of idle kata containers (QEMU + shim + virtiofsd)"
	p.X.Label.Text = "idle containers"
	p.Y.Label.Text = "MiB"
	total, per := make(plotter.XYs, len(points)), make(plotter.XYs, len(points))
	for i, pt := range points {
		total[i] = plotter.XY{X: float64(pt.N), Y: float64(pt.Total()) / 1024}
		per[i] = plotter.XY{X: float64(pt.N), Y: float64(pt.Total()) / 1024 / float64(pt.N)}
	}
	if err := plotutil.AddLinePoints(p, "total", total, "per container", per); err != nil {
		return err
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	return p.Save(5*vg.Inch, 3.5*vg.Inch, path)
}
