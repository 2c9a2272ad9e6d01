// Command hello is a small program the image tests build for each
// platform instead of the whole herald binary.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	fmt.Fprintln(os.Stdout, "hello", version)
}
