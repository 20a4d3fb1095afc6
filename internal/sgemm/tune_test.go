package sgemm

import (
	"os"
	"strconv"
)

func init() {
	if os.Getenv("NOSHARED") != "" {
		tuneShared = false
	}
	if v, err := strconv.Atoi(os.Getenv("CHUNKS")); err == nil {
		tuneChunks = v
	}
}
