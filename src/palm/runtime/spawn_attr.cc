#include "palm/runtime/spawn_attr.h"

#include <signal.h>

namespace palm::runtime {

NewGroupSpawnAttr::NewGroupSpawnAttr() {
  posix_spawnattr_init(&attr_);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr_, &none);
  posix_spawnattr_setsigdefault(&attr_, &all);
  posix_spawnattr_setpgroup(&attr_, 0);
  posix_spawnattr_setflags(&attr_,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

NewGroupSpawnAttr::~NewGroupSpawnAttr() { posix_spawnattr_destroy(&attr_); }

}  // namespace palm::runtime
