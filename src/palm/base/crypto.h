// Secrets and digests: random bearer tokens and SHA-256 (OpenSSL). Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace palm {

// 32 random bytes from the OS CSPRNG, hex encoded (64 characters). CHECK-fails only if the
// kernel's random source is unavailable, which palm cannot run without.
std::string RandomToken();
// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// Compares two strings in time independent of where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace palm
