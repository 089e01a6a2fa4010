// A stand-in for `palm __log-service` so runtime tests need not build the whole daemon.
#include "palm/runtime/log_shim.h"

int main(int argc, char** argv) { return palm::runtime::RunLogService(argc, argv); }
