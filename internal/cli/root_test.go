package cli

import (
	"bytes"
	"strings"
	"testing"
)

func execute(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	root := NewRoot(name)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// As kubectl-herald the same commands are the root, named kubectl herald;
// the controller and agent stay runnable but out of its help.
func TestPluginName(t *testing.T) {
	for _, c := range []struct {
		name, usage  string
		agentVisible bool
	}{
		{"herald", "herald [command]", true},
		{PluginName, "kubectl herald [command]", false},
	} {
		out, err := execute(t, c.name, "--help")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, c.usage) {
			t.Errorf("%s --help: no %q in\n%s", c.name, c.usage, out)
		}
		for _, sub := range []string{"pools", "services", "announcements", "status", "explain", "completion"} {
			if !strings.Contains(out, "\n  "+sub+" ") {
				t.Errorf("%s --help lists no %s:\n%s", c.name, sub, out)
			}
		}
		if got := strings.Contains(out, "\n  agent "); got != c.agentVisible {
			t.Errorf("%s --help lists the agent: %v, want %v", c.name, got, c.agentVisible)
		}
		if out, err := execute(t, c.name, "services", "--help"); err != nil || !strings.Contains(out, "--all-namespaces") {
			t.Errorf("%s services --help: %v\n%s", c.name, err, out)
		}
	}
}

// Shell completion comes with cobra, including the values of -o.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, err := execute(t, "herald", "completion", shell)
		if err != nil || !strings.Contains(out, "herald") {
			t.Errorf("completion %s: %v\n%.200s", shell, err, out)
		}
	}
	out, err := execute(t, "herald", "__complete", "services", "-o", "")
	if err != nil || !strings.Contains(out, "table\njson\nyaml\n") {
		t.Errorf("completion of -o: %v\n%s", err, out)
	}
	out, err = execute(t, "herald", "__complete", "st")
	if err != nil || !strings.Contains(out, "status") {
		t.Errorf("completion of st: %v\n%s", err, out)
	}
}

func TestServiceArg(t *testing.T) {
	for arg, want := range map[string]string{"svc/web": "web", "service/web": "web", "services/web": "web", "web": "web", "deploy/web": "", "svc/": "", "svc/a/b": ""} {
		got, err := serviceArg(arg)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("serviceArg(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
}
