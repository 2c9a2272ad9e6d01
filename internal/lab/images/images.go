// Package images maps container images to the built-in programs of the
// Herald lab, and runs those programs.
//
// The lab runs a Kubernetes cluster on one machine without a container
// runtime: a process kubelet runs each Pod's containers as local processes.
// There is no image to pull and no filesystem to unpack, so the few images the
// lab supports are programs compiled into the herald-lab binary, plus Herald's
// own image, which is the herald binary. Resolve turns a container's image,
// command and args into the argv to exec, and Run is what `herald-lab builtin
// NAME ARGS...` calls to run a built-in program.
package images

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// ErrUnknownImage is wrapped by the error Resolve returns for an image that
// is not one of the lab's built-in programs.
var ErrUnknownImage = errors.New("not a built-in program of the Herald lab")

// knownImages lists the supported repository names for error messages, which
// end up in Pod status, so a user sees what they could have used instead.
const knownImages = "nginx, agnhost, herald"

// Binaries are the programs that the lab's images run.
type Binaries struct {
	// Lab is the absolute path of the herald-lab binary, which runs the
	// built-in programs (`herald-lab builtin NAME`).
	Lab string
	// Herald is the absolute path of the herald binary: Herald's image.
	Herald string
}

// Resolve returns the argv that runs a container of image with the Pod's
// command and args, with the programs in bins.
//
// Only the image's repository name (its last path element) matters; the
// registry, tag and digest are ignored, so "nginx", "nginx:1.27" and
// "docker.io/library/nginx@sha256:..." are the same program:
//
//   - nginx serves the files under /usr/share/nginx/html (a volume mounted
//     there, as with the official image), "/" being the default welcome
//     page unless the directory has an index.html. The official image's
//     default command is `nginx -g "daemon off;"`, so a command line
//     starting with nginx is accepted and ignored (the built-in has no
//     configuration); any other command is an error.
//   - agnhost runs the built-in agnhost with args as its subcommand and
//     flags. The image's entrypoint is /agnhost, so a command of /agnhost or
//     agnhost is dropped; with neither command nor args it runs `pause`,
//     the image's default.
//   - herald runs the herald binary (bins.Herald), whose image entrypoint is
//     /herald: a command of herald (any path) is replaced by the binary.
//
// Any other image yields an error wrapping ErrUnknownImage.
func Resolve(image string, command, args []string, bins Binaries) ([]string, error) {
	argv := append(slices.Clone(command), args...)
	repo := repository(image)
	unsupported := func() error {
		return fmt.Errorf("image %q: the Herald lab's built-in %s cannot run %q", image, repo, argv)
	}
	switch repo {
	case "nginx":
		if len(argv) > 0 && path.Base(argv[0]) != "nginx" {
			return nil, unsupported()
		}
		return []string{bins.Lab, "builtin", "nginx"}, nil
	case "agnhost":
		switch {
		case len(command) > 0 && path.Base(command[0]) != "agnhost":
			return nil, unsupported()
		case len(command) > 0:
			argv = argv[1:]
		case len(args) == 0:
			argv = []string{"pause"}
		}
		return append([]string{bins.Lab, "builtin", "agnhost"}, argv...), nil
	case "herald":
		if len(command) > 0 {
			if path.Base(command[0]) != "herald" {
				return nil, unsupported()
			}
			argv = argv[1:]
		}
		return append([]string{bins.Herald}, argv...), nil
	}
	return nil, fmt.Errorf("image %q: %w (known: %s)", image, ErrUnknownImage, knownImages)
}

// repository returns the last path element of an image reference without
// its tag or digest. The tag is cut after the last "/" so that a registry
// port ("localhost:5000/herald") is not mistaken for one.
func repository(image string) string {
	name, _, _ := strings.Cut(image, "@")
	name = name[strings.LastIndex(name, "/")+1:]
	name, _, _ = strings.Cut(name, ":")
	return name
}
