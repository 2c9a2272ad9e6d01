package image

import (
	"bytes"
	"debug/elf"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// machine maps GOARCH to the ELF machine and class of its executables.
func machine(arch string) (elf.Machine, elf.Class, bool) {
	switch arch {
	case "amd64":
		return elf.EM_X86_64, elf.ELFCLASS64, true
	case "arm64":
		return elf.EM_AARCH64, elf.ELFCLASS64, true
	case "arm":
		return elf.EM_ARM, elf.ELFCLASS32, true
	case "386":
		return elf.EM_386, elf.ELFCLASS32, true
	case "riscv64":
		return elf.EM_RISCV, elf.ELFCLASS64, true
	case "ppc64le":
		return elf.EM_PPC64, elf.ELFCLASS64, true
	case "s390x":
		return elf.EM_S390, elf.ELFCLASS64, true
	}
	return 0, 0, false
}

// CheckBinary returns an error unless data is an ELF executable for
// platform p (Linux, the machine of p's architecture) that is statically
// linked: no program interpreter (PT_INTERP) and no shared libraries,
// so that it runs in an image with nothing else in it.
func CheckBinary(data []byte, p v1.Platform) error {
	if p.OS != "linux" {
		return fmt.Errorf("platform %s: only linux images are built", p.String())
	}
	wantMachine, wantClass, ok := machine(p.Architecture)
	if !ok {
		return fmt.Errorf("platform %s: unknown architecture %q", p.String(), p.Architecture)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("binary for %s is not an ELF file: %w", p.String(), err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("binary for %s is an ELF %s, not an executable", p.String(), f.Type)
	}
	if f.Machine != wantMachine || f.Class != wantClass {
		return fmt.Errorf("binary for %s is for %s (%s), want %s (%s)", p.String(), f.Machine, f.Class, wantMachine, wantClass)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("binary for %s is dynamically linked (it has a program interpreter): build it with CGO_ENABLED=0", p.String())
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("binary for %s: read its dynamic section: %w", p.String(), err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("binary for %s needs shared libraries %v: build it with CGO_ENABLED=0", p.String(), libs)
	}
	return nil
}
