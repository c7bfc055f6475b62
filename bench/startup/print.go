package main

import (
	"fmt"
	"slices"
)

var kindOrder = []string{kindRunc, kindKata, kindTemplate, kindFloor}

func printStartup(r *results) {
	m := r.Machine
	fmt.Printf("\nstart+stop of `docker run --rm busybox true`, %d runs each, interleaved\n", r.Runs)
	fmt.Printf("(%s, %d cores, %s; accelerator %s; guest %s, %d vCPU, %d MiB)\n", m.CPU, m.Cores, mib(m.MemoryKiB), m.Accel, m.GuestKernel, m.VCPUs, m.GuestMiB)
	fmt.Printf("  %-14s %10s %10s %10s\n", "", "median", "min", "max")
	for _, k := range kindOrder {
		d := r.Times[k]
		if len(d) == 0 {
			fmt.Printf("  %-14s %10s\n", k, "n/a (not built)")
			continue
		}
		fmt.Printf("  %-14s %10s %10s %10s\n", k, ms(median(d)), ms(slices.Min(d)), ms(slices.Max(d)))
	}
	fmt.Printf("  kata/floor = %.2fx   kata/runc = %.2fx", r.ratio(kindKata, kindFloor), r.ratio(kindKata, kindRunc))
	if len(r.Times[kindTemplate]) > 0 {
		fmt.Printf("   kata+template/floor = %.2fx   kata+template/runc = %.2fx", r.ratio(kindTemplate, kindFloor), r.ratio(kindTemplate, kindRunc))
	}
	fmt.Println()
}

func printDensity(kind string, points []densityPoint) {
	fmt.Printf("\nidle %s containers (busybox sleep 1d): host PSS of QEMU + shim + virtiofsd\n", kind)
	fmt.Printf("  %4s %12s %14s %12s %12s %12s %12s\n", "N", "total", "per container", "QEMU", "shim", "virtiofsd", "start of Nth")
	for _, p := range points {
		fmt.Printf("  %4d %12s %14s %12s %12s %12s %12s\n", p.N, mib(p.Total()), mib(p.Total()/int64(p.N)),
			mib(p.QEMU), mib(p.Shim), mib(p.Virtiofsd), ms(p.StartNth))
	}
}

func printTrace(steps []traceStep) {
	fmt.Printf("\nwhere one kata container's start and stop go (-trace; guest steps from its console)\n")
	for _, s := range steps {
		fmt.Printf("  %-46s %10s\n", s.Name, ms(s.Took))
	}
}
