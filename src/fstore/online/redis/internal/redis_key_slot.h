#pragma once

// Redis Cluster's key -> hash slot mapping (the cluster specification's
// "Keys distribution model"): CRC16 (XMODEM) of the key, or of its hash tag,
// modulo 16384.

#include <cstdint>
#include <string_view>

namespace fstore::redis_internal {

inline constexpr int kClusterSlots = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis uses.
uint16_t Crc16(std::string_view bytes);

/// The hash slot of `key`: when the key has a '{' followed later by a '}'
/// with at least one byte between the first such pair, only those bytes are
/// hashed (the hash tag); otherwise the whole key.
int KeySlot(std::string_view key);

}  // namespace fstore::redis_internal
