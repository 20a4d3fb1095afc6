//go:build !unix

package cli

import "os"

// terminalWidth is 0 where fmgpu does not ask the terminal for its size:
// progress is then written as plain lines.
func terminalWidth(*os.File) int { return 0 }
