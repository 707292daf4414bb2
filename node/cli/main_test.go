package cli

import (
	"os"
	"testing"
)

// envActAsHydra makes the test binary act as the hydra binary: the demo
// starts its nodes with os.Executable, which in a test is this binary.
const envActAsHydra = "HYDRA_CLI_TEST_ACT_AS_HYDRA"

func TestMain(m *testing.M) {
	if os.Getenv(envActAsHydra) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
