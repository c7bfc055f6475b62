// Package kubernetes holds the manifests that roll kata-deploy out to a Kubernetes cluster
// (kubectl apply -f configs/kubernetes/); its test checks them against the Kubernetes API types.
package kubernetes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kata-deploy/kata-deploy/installer/hostroot"
	"github.com/kata-deploy/kata-deploy/installer/install"
)

// objects decodes every manifest strictly (an unknown or duplicated field fails, as
// kubectl apply --validate=strict would) into its API type, by kind.
func objects(t *testing.T) map[string]any {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/Namespace":
				obj = &corev1.Namespace{}
			case "apps/v1/DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "node.k8s.io/v1/RuntimeClass":
				obj = &nodev1.RuntimeClass{}
			default:
				t.Fatalf("%s, document %d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			if _, dup := out[tm.Kind]; dup {
				t.Fatalf("two %s manifests", tm.Kind)
			}
			out[tm.Kind] = obj
		}
	}
	return out
}

func TestManifests(t *testing.T) {
	objs := objects(t)
	ns, _ := objs["Namespace"].(*corev1.Namespace)
	ds, _ := objs["DaemonSet"].(*appsv1.DaemonSet)
	rc, _ := objs["RuntimeClass"].(*nodev1.RuntimeClass)
	if ns == nil || ds == nil || rc == nil {
		t.Fatalf("want a Namespace, a DaemonSet and a RuntimeClass, got %v", objs)
	}
	if ds.Namespace != ns.Name {
		t.Errorf("DaemonSet in namespace %q, the manifests create %q", ds.Namespace, ns.Name)
	}
	if rc.Handler != install.DefaultRuntimeName {
		t.Errorf("RuntimeClass handler %q, the installer registers %q", rc.Handler, install.DefaultRuntimeName)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("the DaemonSet needs hostPID: the installer finds and restarts the node's containerd")
	}
	if sel := ds.Spec.Selector; sel == nil || !labelsMatch(sel.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the template's labels %v", sel, ds.Spec.Template.Labels)
	}
	// The RuntimeClass schedules onto the nodes the DaemonSet installs onto.
	if rc.Scheduling == nil || !labelsMatch(rc.Scheduling.NodeSelector, spec.NodeSelector) || len(spec.NodeSelector) == 0 {
		t.Errorf("RuntimeClass node selector %v, DaemonSet node selector %v: want the same label", rc.Scheduling, spec.NodeSelector)
	}
	hostRoot := volumeOf(t, spec, "/")
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("want one init container (install) and one container (hold), got %d and %d", len(spec.InitContainers), len(spec.Containers))
	}
	in, hold := spec.InitContainers[0], spec.Containers[0]
	checkContainer(t, in, hostRoot)
	checkContainer(t, hold, hostRoot)
	if want := []string{"install", "--engine", install.EngineContainerd}; !slices.Equal(in.Args[:3], want) {
		t.Errorf("init container args %q, want them to start with %q", in.Args, want)
	}
	if hold.Image != in.Image {
		t.Errorf("images differ: %s and %s", in.Image, hold.Image)
	}
	pre := hold.Lifecycle
	if pre == nil || pre.PreStop == nil || pre.PreStop.Exec == nil || !slices.Contains(pre.PreStop.Exec.Command, "uninstall") {
		t.Fatalf("the hold container's preStop must run uninstall, got %+v", pre)
	}
	if s := spec.TerminationGracePeriodSeconds; s == nil || *s < 60 {
		t.Errorf("terminationGracePeriodSeconds %v: too short for uninstall to restart containerd", s)
	}
}

// volumeOf returns the name of the hostPath volume of path.
func volumeOf(t *testing.T, spec corev1.PodSpec, path string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == path {
			return v.Name
		}
	}
	t.Fatalf("no hostPath volume of %s", path)
	return ""
}

// checkContainer: privileged, the node's root mounted where --host-root (explicit, or the image's
// default) says.
func checkContainer(t *testing.T, c corev1.Container, volume string) {
	t.Helper()
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("container %s is not privileged: the installer enters the node's root", c.Name)
	}
	args := append(slices.Clone(c.Args), c.Command...)
	root := "/host" // the image's KATA_DEPLOY_HOST_ROOT
	if i := slices.Index(args, "--host-root"); i >= 0 && i+1 < len(args) {
		root = args[i+1]
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
		cmd := c.Lifecycle.PreStop.Exec.Command
		if i := slices.Index(cmd, "--host-root"); i < 0 || i+1 >= len(cmd) || cmd[i+1] != root {
			t.Errorf("container %s: preStop %q must name --host-root %s", c.Name, cmd, root)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == root && !m.ReadOnly {
			return
		}
	}
	t.Errorf("container %s does not mount the node's root read-write at %s (%s)", c.Name, root, hostroot.EnvVar)
}

func labelsMatch(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
