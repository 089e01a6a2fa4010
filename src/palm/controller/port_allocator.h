// PortAllocator: hands out free TCP ports on 127.0.0.1 for agents' declared ports
// (PALM_PORT_<NAME>). A port stays reserved until Release()d, so two instances never get the
// same port from palm. The OS may still give a reserved port to another program in the
// window before the agent binds it, as with any dynamic port scheme.
// Thread-safety: none (event loop only).
#pragma once

#include <set>

#include "absl/status/statusor.h"

namespace palm::controller {

class PortAllocator {
 public:
  virtual ~PortAllocator() = default;
  // A port that is free now and not reserved. kResourceExhausted when none is found.
  virtual absl::StatusOr<int> Allocate() = 0;
  // Marks `port` reserved (an adopted instance already uses it).
  virtual void Reserve(int port) = 0;
  virtual void Release(int port) = 0;
};

// Asks the kernel for an ephemeral port (bind to 127.0.0.1:0), skipping reserved ones.
class KernelPortAllocator final : public PortAllocator {
 public:
  absl::StatusOr<int> Allocate() override;
  void Reserve(int port) override { reserved_.insert(port); }
  void Release(int port) override { reserved_.erase(port); }

 private:
  std::set<int> reserved_;
};

}  // namespace palm::controller
