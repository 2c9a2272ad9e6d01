package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaries(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	labBin := write("bin/herald-lab", 0o755)
	herald := write("bin/herald", 0o755)
	other := write("elsewhere/herald", 0o755)
	plain := write("elsewhere/not-executable", 0o644)
	lonely := write("lonely/herald-lab", 0o755)

	tests := []struct {
		name       string
		opts       Options
		wantHerald string
		wantErr    string // a substring of the error; empty: no error
	}{
		{name: "herald next to herald-lab", opts: Options{Lab: labBin}, wantHerald: herald},
		{name: "--herald", opts: Options{Lab: labBin, Herald: other}, wantHerald: other},
		{name: "none next to herald-lab", opts: Options{Lab: lonely},
			wantErr: "there is none at " + filepath.Join(dir, "lonely", "herald") + ": build it next to herald-lab"},
		{name: "--herald missing", opts: Options{Lab: labBin, Herald: filepath.Join(dir, "nope")}, wantErr: "--herald or $HERALD_LAB_HERALD"},
		{name: "not executable", opts: Options{Lab: labBin, Herald: plain}, wantErr: "is not an executable file"},
		{name: "a directory", opts: Options{Lab: labBin, Herald: dir}, wantErr: "is not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotLab, gotHerald, err := tt.opts.binaries()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("binaries() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gotLab != tt.opts.Lab || gotHerald != tt.wantHerald {
				t.Errorf("binaries() = %q, %q; want %q, %q", gotLab, gotHerald, tt.opts.Lab, tt.wantHerald)
			}
		})
	}
}

func TestCheckProxy(t *testing.T) {
	for _, tc := range []struct {
		proxy, err string
	}{
		{ProxyNone, ""},
		{"nftables", ""},
		{"iptables", ""},
		{"ipvs", "never been tested"},
		{"userspace", `--proxy "userspace": want none, nftables or iptables`},
		{"", `want none, nftables or iptables`},
	} {
		err := checkProxy(tc.proxy)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("checkProxy(%q) = %v, want an error containing %q", tc.proxy, err, tc.err)
		}
	}
}
