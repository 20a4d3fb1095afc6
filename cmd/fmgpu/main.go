// Command fmgpu trains flow-matching models and samples and scores them;
// see README.md and `fmgpu --help`.
package main

import (
	"os"

	"github.com/fmgpu/fmgpu/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args)) }
