package coupling

//go:generate go run ./asm -out assign_amd64.s -stubs assign_stubs_amd64.go -pkg coupling
