package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// flagsOf returns the flags `ordermesh COMMAND --help` lists.
func flagsOf(t *testing.T, command ...string) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	Main(context.Background(), append(slices.Clone(command), "--help"), &out, &out)
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("ordermesh %s --help lists no flags:\n%s", strings.Join(command, " "), out.String())
	}
	return flags
}

// checkArgs checks that args (an ordermesh command line) name a command
// and only flags it has, and that env names only flags it has.
func checkArgs(t *testing.T, where string, args []string, env map[string]string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no command", where)
		return
	}
	command := args[:1]
	if args[0] == "serve" {
		if len(args) < 2 || !slices.Contains(Services, args[1]) {
			t.Errorf("%s: serve of an unknown service: %v", where, args)
			return
		}
	}
	flags := flagsOf(t, command...)
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !flags[name] {
				t.Errorf("%s: ordermesh %s has no flag --%s", where, args[0], name)
			}
		}
	}
	// Shared environments serve several commands: each variable must be
	// the flag of at least one of them.
	known := flagsOf(t, "serve")
	for name := range flagsOf(t, "setup") {
		known[name] = true
	}
	for k := range env {
		name, ok := strings.CutPrefix(k, "ORDERMESH_")
		if !ok {
			continue
		}
		if !known[strings.ToLower(strings.ReplaceAll(name, "_", "-"))] {
			t.Errorf("%s: $%s names no flag of ordermesh serve or setup", where, k)
		}
	}
}

// moduleVersion is the version go.mod requires of module path.
func moduleVersion(t *testing.T, path string) string {
	raw, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", path)
	return ""
}

// TestDeploymentArtefacts: the Dockerfile builds the binary, and the
// compose file and Kubernetes manifests parse, give every Deployment
// readiness and liveness probes and a PodDisruptionBudget, and name only
// commands, services and flags that exist.
func TestDeploymentArtefacts(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy")
	docker, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./cmd/ordermesh", "ENTRYPOINT", "-static"} {
		if !bytes.Contains(docker, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	t.Run("compose", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
		if err != nil {
			t.Fatal(err)
		}
		var compose struct {
			Services map[string]struct {
				Image       string            `yaml:"image"`
				Command     []string          `yaml:"command"`
				Environment map[string]string `yaml:"environment"`
				Healthcheck struct {
					Test []string `yaml:"test"`
				} `yaml:"healthcheck"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(raw, &compose); err != nil {
			t.Fatal(err)
		}
		// The brokers run the nats-server version ordermesh is built and
		// tested with.
		want := "nats:" + strings.TrimPrefix(moduleVersion(t, "github.com/nats-io/nats-server/v2"), "v") + "-alpine"
		for name, svc := range compose.Services {
			if strings.HasPrefix(svc.Image, "nats:") && svc.Image != want {
				t.Errorf("compose %s runs %s; go.mod has %s", name, svc.Image, want)
			}
		}
		seen := map[string]int{}
		for name, svc := range compose.Services {
			if svc.Image != "ordermesh:local" {
				continue
			}
			checkArgs(t, "compose "+name, svc.Command, svc.Environment)
			// Healthy only when ready: /readyz, not that the binary runs.
			hc := svc.Healthcheck.Test
			if len(svc.Command) > 0 && svc.Command[0] == "serve" && (len(hc) < 3 || hc[2] != "healthcheck" || !strings.HasSuffix(hc[len(hc)-1], "/readyz")) {
				t.Errorf("compose %s: healthcheck %v; want ordermesh healthcheck --url …/readyz", name, hc)
			}

			if len(svc.Command) > 1 && svc.Command[0] == "serve" {
				seen[svc.Command[1]]++
			}
		}
		for _, svc := range Services {
			if seen[svc] == 0 {
				t.Errorf("compose runs no %s", svc)
			}
		}
		if seen["orders"] < 2 || seen["payments"] < 2 || seen["inventory"] < 2 {
			t.Errorf("compose instances per service: %v; want orders, inventory and payments twice", seen)
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dir, "kubernetes", "ordermesh.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		type container struct {
			Args           []string `yaml:"args"`
			ReadinessProbe *struct {
				HTTPGet struct{ Path string } `yaml:"httpGet"`
			} `yaml:"readinessProbe"`
			LivenessProbe *struct {
				HTTPGet struct{ Path string } `yaml:"httpGet"`
			} `yaml:"livenessProbe"`
		}
		var secret map[string]string
		deployments, budgets := map[string]bool{}, map[string]bool{}
		var jobs int
		dec := yaml.NewDecoder(f)
		for {
			var doc struct {
				Kind     string `yaml:"kind"`
				Metadata struct{ Name string }
				Data     map[string]string `yaml:"stringData"`
				Spec     struct {
					Template struct {
						Spec struct{ Containers []container }
					}
				}
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			switch doc.Kind {
			case "Secret":
				secret = doc.Data
			case "PodDisruptionBudget":
				budgets[doc.Metadata.Name] = true
			case "Job", "Deployment":
				if doc.Kind == "Job" {
					jobs++
				} else {
					deployments[doc.Metadata.Name] = true
				}
				for _, c := range doc.Spec.Template.Spec.Containers {
					checkArgs(t, doc.Kind+" "+doc.Metadata.Name, c.Args, secret)
					if doc.Kind == "Deployment" && (c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
						c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez") {
						t.Errorf("Deployment %s lacks /readyz and /livez probes", doc.Metadata.Name)
					}
				}
			}
		}
		for _, svc := range Services {
			if !deployments[svc] || !budgets[svc] {
				t.Errorf("%s: Deployment %v, PodDisruptionBudget %v; want both", svc, deployments[svc], budgets[svc])
			}
		}
		if jobs != 1 {
			t.Errorf("%d Jobs, want the stream setup", jobs)
		}
	})
}
