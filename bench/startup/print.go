package main

import (
	"fmt"
	"slices"
)

// kindOrder is the order kinds are printed in.
var kindOrder = []string{kindRunc, kindKata, kindTemplate, kindPool, kindSmallTB, kindFloor}

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
	for _, k := range append([]string{kindKata}, measuredVariants(r)...) {
		fmt.Printf("  %s/floor = %.2fx   %s/runc = %.2fx\n", k, r.ratio(k, kindFloor), k, r.ratio(k, kindRunc))
	}
}

// measuredVariants are the kinds of the variants measured in start-up, in order.
func measuredVariants(r *results) []string {
	var kinds []string
	for _, v := range variants {
		if len(r.Times[v.kind]) > 0 {
			kinds = append(kinds, v.kind)
		}
	}
	return kinds
}

// printDensity prints the density of a kind; waiting adds the waiting clone's QEMU (kata+pool).
func printDensity(kind string, points []densityPoint, waiting bool) {
	fmt.Printf("\nidle %s containers (busybox sleep 1d): host PSS of QEMU + shim + virtiofsd\n", kind)
	if waiting {
		fmt.Printf("(the pool's waiting clone is not counted in them: its QEMU is the last column, add it once)\n")
	}
	line := func(cols ...any) {
		f := "  %4v %12v %14v %12v %12v %12v %12v"
		if waiting {
			f += " %16v"
		} else {
			cols = cols[:len(cols)-1]
		}
		fmt.Printf(f+"\n", cols...)
	}
	line("N", "total", "per container", "QEMU", "shim", "virtiofsd", "start of Nth", "waiting clone")
	for _, p := range points {
		line(p.N, mib(p.Total()), mib(p.Total()/int64(p.N)), mib(p.QEMU), mib(p.Shim), mib(p.Virtiofsd), ms(p.StartNth), mib(p.Waiting))
	}
}

func printTrace(steps []traceStep) {
	fmt.Printf("\nwhere one kata container's start and stop go (-trace; guest steps from its console)\n")
	for _, s := range steps {
		fmt.Printf("  %-46s %10s\n", s.Name, ms(s.Took))
	}
}
