// A stand-in for `palm __exec-limits` so runtime tests need not build the whole daemon.
#include "palm/runtime/process_runtime.h"

int main(int argc, char** argv) { return palm::runtime::RunLimitsShim(argc, argv); }
